"""The research systems built on the core: Modular-DCM (``modular_dcm``) and AVICI
(``avici``)."""
