"""``python -m pml_proxy_anchor``: the same as the ``pml-proxy-anchor`` command."""

from pml_proxy_anchor.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
