"""numpy values in the JSON of the model artefacts (``json.dumps(default=...)``).

>>> import json
>>> json.dumps({"a": np.arange(2), "b": np.float64(0.5)}, default=json_default)
'{"a": [0, 1], "b": 0.5}'
"""

from __future__ import annotations

from typing import Any

import numpy as np


def json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
