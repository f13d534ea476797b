/* The baseline level: runs on every CPU of the architecture (SSE2 on
 * x86-64, NEON on aarch64). setup.py compiles it with no extra flags. */
#define KLF_LEVEL baseline
#include "../engine/level.h"
