/* Choosing the accelerator: KVM only where it can boot our guest. */
#ifndef SBX_ACCEL_H
#define SBX_ACCEL_H

#include "sandbox.h"

/* Resolve `requested` (option, then $SANDBOX_ACCEL, then detection) to
 * SANDBOX_ACCEL_KVM or SANDBOX_ACCEL_TCG. Returns the choice (> 0) or an
 * error code with detail (explicit KVM that cannot work). */
int sbx_accel_resolve(sandbox_accel_t requested);
/* Detection only, with the reason written into why (may be NULL). Reads
 * sysfs paths under `sysroot` ("" for the real system) so tests can feed
 * it fake trees. */
int sbx_accel_detect(const char *sysroot, const char *dev_kvm, char *why, size_t cap);

#endif
