"""Safety configs of the robots (``robolearn-deploy robot=<name>``): data, shipped as ``robolearn._real``."""
