// The native part of the tessera Python package (tessera._tessera): the C API of
// libtessera.so bound with pybind11. The package's Python files build on it (tessera/*.py).
#include "handles.hpp"

PYBIND11_MODULE(_tessera, m) {
  m.doc() = "Tessera's C API for Python (use the tessera package, not this module)";
  m.attr("TESSERA_VERSION") = tessera_version();
  tpy::register_errors(m);
  tpy::register_system(m);
  tpy::register_container(m);
  tpy::register_objects(m);
  tpy::register_tx(m);
  tpy::register_fs(m);
}
