"""One module per compression method; each registers its ``Pass`` on import (engine.registry)."""
