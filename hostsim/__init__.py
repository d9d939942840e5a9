"""hostsim: discrete-event simulation of PQAP(AQIC) interception on s390x KVM hosts."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hostsim")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
