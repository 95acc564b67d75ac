"""Schemathesis hooks (loaded through SCHEMATHESIS_HOOKS by scripts/schemathesis.sh).

Most generated stream names are replaced by `example-stream`, which the script creates, so that
writes reach the emulator and succeed; the rest stay random and must answer 400
(invalid_stream_name) or 404 (stream_not_found) problem+json. The choice is a deterministic function
of the generated value, so Hypothesis sees the same test case each time it replays one.
"""

import zlib

import schemathesis

STREAM = "example-stream"


@schemathesis.hook
def map_path_parameters(context, path_parameters):
    if path_parameters and "stream" in path_parameters:
        seed = zlib.crc32(repr(path_parameters["stream"]).encode("utf-8", "surrogatepass"))
        if seed % 5 != 0:  # ~80%
            path_parameters["stream"] = STREAM
    return path_parameters
