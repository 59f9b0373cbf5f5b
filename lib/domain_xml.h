/* libvirt domain XML for one sandbox, built with libxml2. */
#ifndef SBX_DOMAIN_XML_H
#define SBX_DOMAIN_XML_H

#include <stddef.h>

#define SBX_XML_NS "urn:libsandbox:domain:1"
/* Guest CPU model under TCG (bench/floor/floor.py uses the same). */
#define SBX_TCG_CPU_MODEL "Nehalem"

/* A host directory shared over virtio-9p (doc/design.md: "Volumes"). */
struct sbx_domain_fs {
	const char *host_path;
	const char *tag; /* 9p mount tag the agent mounts by */
	int readonly;
};

struct sbx_domain_spec {
	const char *name;
	int kvm; /* 1: <domain type='kvm'>, 0: TCG */
	unsigned int memory_mb;
	unsigned int vcpus;
	const char *kernel;
	const char *initrd;
	const char *cmdline;
	const char *loader; /* qboot ROM or NULL for the default firmware */
	const char *disk;   /* qcow2 overlay */
	const char *agent_socket;
	const char *console_log;
	const char *state_dir; /* recorded in metadata to recognise our domains */
	const struct sbx_domain_fs *fs;
	size_t fs_count; /* at most 16: PCI slots 0x04..0x13 */
};

/* Returns malloc'd XML or NULL (error set). */
char *sbx_domain_xml(const struct sbx_domain_spec *s);
/* Given the <metadata> element text libvirt returns, return the state_dir
 * it names (malloc'd) or NULL. */
char *sbx_domain_xml_state_dir(const char *metadata_xml);

#endif
