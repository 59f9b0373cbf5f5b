/* Domain XML. Built as a libxml2 tree so no caller-supplied string (paths,
 * the command line) can break out of its element or attribute. */
#include "domain_xml.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "sandbox.h"

static xmlNodePtr child(xmlNodePtr parent, const char *name, const char *text)
{
	return xmlNewTextChild(parent, NULL, BAD_CAST name, text ? BAD_CAST text : NULL);
}

static void attr(xmlNodePtr n, const char *name, const char *value)
{
	xmlNewProp(n, BAD_CAST name, BAD_CAST value);
}

static void add_os(xmlNodePtr dom, const struct sbx_domain_spec *s)
{
	xmlNodePtr os = child(dom, "os", NULL);
	xmlNodePtr type = child(os, "type", "hvm");
	attr(type, "arch", "x86_64");
	attr(type, "machine", "q35");
	if (s->loader) {
		xmlNodePtr l = child(os, "loader", s->loader);
		attr(l, "type", "rom");
		attr(l, "readonly", "yes");
	}
	child(os, "kernel", s->kernel);
	child(os, "initrd", s->initrd);
	child(os, "cmdline", s->cmdline);
}

/* qboot does not program PCIe root ports, so a device behind one stays in
 * D3cold and the guest never sees it. Put ours straight on the root bus. */
static void root_bus_slot(xmlNodePtr n, const char *slot)
{
	xmlNodePtr a = child(n, "address", NULL);
	attr(a, "type", "pci");
	attr(a, "domain", "0x0000");
	attr(a, "bus", "0x00");
	attr(a, "slot", slot);
	attr(a, "function", "0x0");
}

/* virtio-9p with QEMU's "local" driver. accessmode squash (QEMU's
 * security_model=none): QEMU runs as its unprivileged user, so it cannot
 * give files other owners; ownership changes are ignored instead of
 * failing. <readonly/> makes QEMU refuse every write itself (readonly=on
 * on the fsdev), whatever the guest does. */
static void add_filesystem(xmlNodePtr dev, const struct sbx_domain_fs *f, unsigned int slot)
{
	char slotstr[8];
	xmlNodePtr fs = child(dev, "filesystem", NULL);
	attr(fs, "type", "mount");
	attr(fs, "accessmode", "squash");
	attr(child(fs, "driver", NULL), "type", "path");
	attr(child(fs, "source", NULL), "dir", f->host_path);
	attr(child(fs, "target", NULL), "dir", f->tag);
	if (f->readonly)
		child(fs, "readonly", NULL);
	snprintf(slotstr, sizeof slotstr, "0x%02x", slot);
	root_bus_slot(fs, slotstr);
}

static void add_devices(xmlNodePtr dom, const struct sbx_domain_spec *s)
{
	xmlNodePtr dev = child(dom, "devices", NULL);

	xmlNodePtr disk = child(dev, "disk", NULL);
	attr(disk, "type", "file");
	attr(disk, "device", "disk");
	xmlNodePtr drv = child(disk, "driver", NULL);
	attr(drv, "name", "qemu");
	attr(drv, "type", "qcow2");
	attr(drv, "cache", "unsafe"); /* throwaway disk: never worth an fsync */
	attr(drv, "discard", "unmap");
	xmlNodePtr src = child(disk, "source", NULL);
	attr(src, "file", s->disk);
	/* We own the files' permissions ourselves; no relabelling dance on a
	 * base image shared by every sandbox. */
	xmlNodePtr sl = child(src, "seclabel", NULL);
	attr(sl, "model", "dac");
	attr(sl, "relabel", "no");
	xmlNodePtr tgt = child(disk, "target", NULL);
	attr(tgt, "dev", "vda");
	attr(tgt, "bus", "virtio");
	root_bus_slot(disk, "0x02");

	xmlNodePtr vs = child(dev, "controller", NULL);
	attr(vs, "type", "virtio-serial");
	attr(vs, "index", "0");
	root_bus_slot(vs, "0x03");

	xmlNodePtr ser = child(dev, "serial", NULL);
	attr(ser, "type", "file");
	xmlNodePtr ssrc = child(ser, "source", NULL);
	attr(ssrc, "path", s->console_log);
	xmlNodePtr st = child(ser, "target", NULL);
	attr(st, "port", "0");

	xmlNodePtr ch = child(dev, "channel", NULL);
	attr(ch, "type", "unix");
	xmlNodePtr csrc = child(ch, "source", NULL);
	attr(csrc, "mode", "bind");
	attr(csrc, "path", s->agent_socket);
	xmlNodePtr ct = child(ch, "target", NULL);
	attr(ct, "type", "virtio");
	attr(ct, "name", "org.libsandbox.agent");

	for (size_t i = 0; i < s->fs_count; i++)
		add_filesystem(dev, &s->fs[i], 0x04 + (unsigned int)i);

	xmlNodePtr usb = child(dev, "controller", NULL);
	attr(usb, "type", "usb");
	attr(usb, "model", "none");
	attr(child(dev, "memballoon", NULL), "model", "none");
}

static void add_metadata(xmlNodePtr dom, const struct sbx_domain_spec *s)
{
	xmlNodePtr md = child(dom, "metadata", NULL);
	xmlNodePtr sb = xmlNewChild(md, NULL, BAD_CAST "sandbox", NULL);
	xmlNsPtr ns = xmlNewNs(sb, BAD_CAST SBX_XML_NS, BAD_CAST "sbx");
	xmlSetNs(sb, ns);
	xmlNewTextChild(sb, ns, BAD_CAST "state_dir", BAD_CAST s->state_dir);
}

char *sbx_domain_xml(const struct sbx_domain_spec *s)
{
	char num[32];
	xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
	xmlNodePtr dom = xmlNewNode(NULL, BAD_CAST "domain");
	if (!doc || !dom) {
		xmlFreeDoc(doc);
		xmlFreeNode(dom);
		sbx_fail(SANDBOX_E_NOMEM, "building domain XML");
		return NULL;
	}
	xmlDocSetRootElement(doc, dom);
	attr(dom, "type", s->kvm ? "kvm" : "qemu");
	child(dom, "name", s->name);
	add_metadata(dom, s);
	snprintf(num, sizeof num, "%u", s->memory_mb);
	attr(child(dom, "memory", num), "unit", "MiB");
	snprintf(num, sizeof num, "%u", s->vcpus);
	child(dom, "vcpu", num);
	add_os(dom, s);
	xmlNodePtr cpu = child(dom, "cpu", NULL);
	if (s->kvm) {
		attr(cpu, "mode", "host-passthrough");
	} else {
		/* Under TCG a plain model boots faster than "maximum": the
		 * kernel has fewer features to patch code for. Nehalem keeps
		 * SSE4.2 and POPCNT, which common binaries expect. */
		attr(cpu, "mode", "custom");
		attr(cpu, "match", "exact");
		attr(cpu, "check", "none");
		attr(child(cpu, "model", SBX_TCG_CPU_MODEL), "fallback", "forbid");
	}
	child(dom, "on_poweroff", "destroy");
	child(dom, "on_reboot", "destroy");
	child(dom, "on_crash", "destroy");
	add_devices(dom, s);

	xmlChar *out = NULL;
	int len = 0;
	xmlDocDumpFormatMemory(doc, &out, &len, 1);
	xmlFreeDoc(doc);
	if (!out) {
		sbx_fail(SANDBOX_E_NOMEM, "serialising domain XML");
		return NULL;
	}
	char *copy = strdup((const char *)out);
	xmlFree(out);
	if (!copy)
		sbx_fail(SANDBOX_E_NOMEM, "serialising domain XML");
	return copy;
}

char *sbx_domain_xml_state_dir(const char *metadata_xml)
{
	xmlDocPtr doc = xmlReadMemory(metadata_xml, (int)strlen(metadata_xml), "metadata.xml", NULL,
				      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	if (!doc)
		return NULL;
	char *result = NULL;
	xmlNodePtr root = xmlDocGetRootElement(doc);
	for (xmlNodePtr n = root ? root->children : NULL; n; n = n->next) {
		if (n->type == XML_ELEMENT_NODE && !strcmp((const char *)n->name, "state_dir")) {
			xmlChar *t = xmlNodeGetContent(n);
			if (t)
				result = strdup((const char *)t);
			xmlFree(t);
			break;
		}
	}
	xmlFreeDoc(doc);
	return result;
}
