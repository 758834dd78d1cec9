"""Which service a measured target belongs to (data in ``services.toml``), so per-target blocking merges into the
incidents people talk about ("WhatsApp is blocked") without hiding which targets were hit."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["ServiceMap", "load_services", "host_of"]


def host_of(target: str) -> str:
    """The host name of a URL or an endpoint (``1.2.3.4:443``, ``e1.whatsapp.net:5222``), lower-case."""
    text = target.strip().lower()
    if "://" in text:
        return (urlsplit(text).hostname or "").rstrip(".")
    host = text.split("/", 1)[0]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.strip("[]").rstrip(".")


@dataclass(frozen=True, slots=True)
class ServiceMap:
    by_suffix: dict[str, str] = field(default_factory=dict)  # domain suffix -> service
    by_test: dict[str, str] = field(default_factory=dict)    # test name -> service
    version: int = 1

    def service_of(self, test_name: str | None, target: str | None, domain: str | None = None) -> str:
        """The service of one verdict's target: by test name for service tests, else by the longest matching
        domain suffix, else the host itself (without ``www.``)."""
        if test_name and test_name in self.by_test:
            return self.by_test[test_name]
        host = (domain or host_of(target or "")).lower()
        labels = host.split(".")
        for i in range(len(labels)):
            service = self.by_suffix.get(".".join(labels[i:]))
            if service is not None:
                return service
        return host.removeprefix("www.") or (target or "?")


def load_services(path: Path | None = None) -> ServiceMap:
    """The shipped service groups, or a file of the same shape (``[services]`` and ``[tests]`` tables)."""
    if path is None:
        text = resources.files("netvigil.incidents").joinpath("services.toml").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    doc = tomllib.loads(text)
    by_suffix: dict[str, str] = {}
    for service, suffixes in doc.get("services", {}).items():
        for suffix in suffixes:
            by_suffix[str(suffix).lower().lstrip(".")] = service
    by_test = {str(k): str(v) for k, v in doc.get("tests", {}).items()}
    return ServiceMap(by_suffix=by_suffix, by_test=by_test, version=int(doc.get("version", 1)))
