"""CPython fakes of machine, onewire, ds18x20 and hx711 (installed in sys.modules)."""
