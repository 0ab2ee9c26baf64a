"""The items of ``benchmarks/speed.py``, one module each (``reg``, ``step``, ``cil``, ``data``, ``e2e``)."""
