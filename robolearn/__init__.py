"""robolearn: from demonstrations to a deployed manipulation skill, in one stack."""

__version__ = "0.1.0"
