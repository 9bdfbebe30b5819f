/* The control of the tests' stack scans (tests/stackview.py compiles it with cc): native code
   that leaves a copy of a needle in its frame, as native code handling a secret does. */
#include <stddef.h>
void leave_on_stack(const unsigned char *needle, size_t length, size_t depth) {
    /* The needle at the frame's bottom, depth bytes of frame above it: it lies about
       length + depth bytes below the caller's stack pointer. volatile: the stores stay. */
    volatile unsigned char frame[length + depth];
    for (size_t i = 0; i < length; i++)
        frame[i] = needle[i];
    frame[length + depth - 1] = 0;
    (void)frame; /* written only: what it leaves behind is the point */
}
