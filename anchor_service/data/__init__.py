"""Examples from the paper's datasets, generic files, Hugging Face datasets or the demo task."""

from anchor_service.data.demo import demo_response, generate_demo
from anchor_service.data.errors import DataError, DataNotFoundError, LoadResult, RowError
from anchor_service.data.load import load_examples, resolve_data_dir

__all__ = [
    "DataError",
    "DataNotFoundError",
    "LoadResult",
    "RowError",
    "demo_response",
    "generate_demo",
    "load_examples",
    "resolve_data_dir",
]
