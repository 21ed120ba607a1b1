"""Image machinery shared by the vision domains (MNIST, CIFAR-10).

Modules: `data` (image sets, model space, downloads), `prior` (the UNet DDPM recipe),
`classes` (class sets and conditions), `classifier` (the CNN reward), `posterior`
(LoRA and set-expert posteriors), `bank` (exact posteriors by importance weighting),
`evaluation` (the paper's metrics), `trainer` (class-set RTB), `compare` (DPS and
DPOK at an equal budget), `commands` (train-prior, train-classifier).
"""
