/* Accelerator detection. A KVM probe that runs a few real-mode
 * instructions succeeds even under kvm_pvm, which then hangs a stock
 * kernel, so the only safe signal is which vendor module backs /dev/kvm:
 * kvm_intel or kvm_amd means hardware virtualisation a normal kernel can
 * use. Anything else (kvm_pvm, no module, no access) means TCG. */
#include "accel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

static int module_loaded(const char *sysroot, const char *name)
{
	char path[512];
	struct stat st;
	snprintf(path, sizeof path, "%s/sys/module/%s", sysroot, name);
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int sbx_accel_detect(const char *sysroot, const char *dev_kvm, char *why, size_t cap)
{
	char dummy[8];
	if (!why) {
		why = dummy;
		cap = sizeof dummy;
	}
	if (access(dev_kvm, R_OK | W_OK) != 0) {
		snprintf(why, cap, "%s is missing or not accessible", dev_kvm);
		return SANDBOX_ACCEL_TCG;
	}
	if (module_loaded(sysroot, "kvm_pvm")) {
		snprintf(why, cap,
			 "%s is backed by kvm_pvm, which cannot boot a standard guest kernel",
			 dev_kvm);
		return SANDBOX_ACCEL_TCG;
	}
	if (module_loaded(sysroot, "kvm_intel") || module_loaded(sysroot, "kvm_amd")) {
		snprintf(why, cap, "hardware KVM (kvm_intel/kvm_amd) is available");
		return SANDBOX_ACCEL_KVM;
	}
	snprintf(why, cap, "no kvm_intel or kvm_amd module is loaded");
	return SANDBOX_ACCEL_TCG;
}

static int parse_env(sandbox_accel_t *out)
{
	const char *e = getenv("SANDBOX_ACCEL");
	if (!e || !*e || !strcasecmp(e, "auto")) {
		*out = SANDBOX_ACCEL_AUTO;
		return 0;
	}
	if (!strcasecmp(e, "kvm")) {
		*out = SANDBOX_ACCEL_KVM;
		return 0;
	}
	if (!strcasecmp(e, "tcg")) {
		*out = SANDBOX_ACCEL_TCG;
		return 0;
	}
	return sbx_fail(SANDBOX_E_INVAL, "SANDBOX_ACCEL='%.32s': expected auto, kvm or tcg", e);
}

int sbx_accel_resolve(sandbox_accel_t requested)
{
	if (requested == SANDBOX_ACCEL_AUTO) {
		int rc = parse_env(&requested);
		if (rc)
			return rc;
	}
	if (requested == SANDBOX_ACCEL_TCG)
		return SANDBOX_ACCEL_TCG;
	char why[256];
	int found = sbx_accel_detect("", "/dev/kvm", why, sizeof why);
	if (requested == SANDBOX_ACCEL_KVM && found != SANDBOX_ACCEL_KVM)
		return sbx_fail(SANDBOX_E_ACCEL, "KVM was requested but cannot be used: %s", why);
	return found;
}
