// Tessera's version (the CMake project version), for --version, the start log line and the
// engine's system info.
#pragma once

namespace tessera {

const char* version();

}  // namespace tessera
