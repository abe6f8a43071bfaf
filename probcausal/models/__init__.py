"""The research systems built on the core: Modular-DCM (``modular_dcm``)."""
