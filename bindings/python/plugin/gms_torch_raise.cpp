// gms_torch_raise.cpp: a failed allocation raised as a C++ exception, the
// way PyTorch's own allocator reports running out of memory. PyTorch does
// not check the pointer a pluggable allocator returns: a NULL would reach
// the next kernel as an illegal address, and a CUDA context that took one
// is lost for the rest of the process. Thrown instead, the failure unwinds
// through gms_torch_alloc (compiled with unwind tables) to PyTorch, which
// raises it in Python as a RuntimeError with gms's message. The one C++
// file of the plug-in: C cannot throw.
#include <new>
#include <string>

namespace {

// A bad_alloc, so that C++ code that handles running out of memory
// handles it, with gms's reason as its message.
class allocation_refused : public std::bad_alloc {
  public:
    explicit allocation_refused(const char *why) : why_(why) {}
    const char *what() const noexcept override { return why_.c_str(); }

  private:
    std::string why_;
};

} // namespace

extern "C" [[noreturn]] void gms_torch_raise(const char *why)
{
    throw allocation_refused(why);
}
