"""The domain registry: ``get(name)`` returns a `rtb_lab.domain.Domain`, ``names()`` lists them.

Built-in domains are imported lazily (MNIST pulls in diffusers and peft), so listing
the names costs nothing. Register your own with ``register(my_domain)``.
"""

from __future__ import annotations

import importlib

from rtb_lab.domain import Domain, check_domain

__all__ = ["get", "names", "register", "unregister"]

# name -> "module:attribute" of the Domain object, imported on first use.
_BUILTIN = {"toy2d": "rtb_lab.domains.toy2d:DOMAIN", "mnist": "rtb_lab.domains.mnist:DOMAIN",
            "cifar10": "rtb_lab.domains.cifar10:DOMAIN", "text": "rtb_lab.domains.text:DOMAIN",
            "control": "rtb_lab.domains.control:DOMAIN"}
_LOADED: dict[str, Domain] = {}


def names() -> list[str]:
    """Every registered domain's name, built-in first."""
    return list(_BUILTIN) + [name for name in _LOADED if name not in _BUILTIN]


def get(name: str) -> Domain:
    """The domain called `name`; KeyError naming the registered ones otherwise."""
    if name in _LOADED:
        return _LOADED[name]
    if name not in _BUILTIN:
        raise KeyError(f"unknown domain {name!r}; choose one of {names()}")
    module, attribute = _BUILTIN[name].split(":")
    _LOADED[name] = check_domain(getattr(importlib.import_module(module), attribute))
    return _LOADED[name]


def register(domain: Domain) -> Domain:
    """Add `domain` under ``domain.name`` (TypeError if it misses part of the protocol,
    ValueError if the name is a built-in one). Returns it."""
    check_domain(domain)
    if domain.name in _BUILTIN:
        raise ValueError(f"{domain.name!r} is a built-in domain; pick another name")
    _LOADED[domain.name] = domain
    return domain


def unregister(name: str) -> None:
    """Remove a domain added with `register` (tests use it to clean up)."""
    if name in _BUILTIN:
        raise ValueError(f"{name!r} is a built-in domain and cannot be removed")
    _LOADED.pop(name, None)
