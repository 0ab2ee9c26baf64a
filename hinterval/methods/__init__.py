"""Continual-learning methods behind one interface (:class:`~hinterval.methods.base.ContinualMethod`),
declared in :mod:`hinterval.methods.registry` and built with
:func:`~hinterval.methods.registry.build_method`."""
