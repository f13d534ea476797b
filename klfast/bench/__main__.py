"""``python -m klfast.bench``: the benchmark report (see :mod:`klfast.bench`)."""
from klfast.bench import main

raise SystemExit(main())
