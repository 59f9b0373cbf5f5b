/* The per-sandbox egress proxy: the guest's only way out. A thread of its
 * own with its own poll loop decides every DNS query and TCP connection the
 * agent forwards (doc/protocol.md, "Network streams") against allow_net,
 * does the real I/O, and audits each decision. */
#ifndef SBX_PROXY_H
#define SBX_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h"
#include "sandbox.h"

struct sandbox;
struct sbx_proxy;

/* Set up (resolver, policy) without starting the thread. o must be a full
 * (upgraded, validated) options struct. Returns 0 or an error with detail. */
int sbx_proxy_new(struct sandbox *sb, const sandbox_options_t *o, struct sbx_proxy **out);
int sbx_proxy_start(struct sbx_proxy *px);
/* Stop and join the thread; idempotent. Call after the channel is shut. */
void sbx_proxy_stop(struct sbx_proxy *px);
/* Stop, close every connection, free. NULL is fine. */
void sbx_proxy_free(struct sbx_proxy *px);

/* A frame on an agent-chosen stream (or a WINDOW for one), from the I/O
 * thread with sb->lock held. Never blocks. Returns 0, or -1 with the
 * protocol violation in why. */
int sbx_proxy_on_frame(struct sbx_proxy *px, const struct sbx_frame_hdr *h, const uint8_t *pl,
		       char *why, size_t cap);

/* Replace the policy (allow_net semantics). Returns 0 or SANDBOX_E_INVAL
 * with detail; audited as net.policy. Any thread. */
int sbx_proxy_set_policy(struct sbx_proxy *px, const char *const *allow_net);

/* Secrets: how many, and each one's variable name and placeholder (the
 * guest's environment gets NAME=placeholder). */
size_t sbx_proxy_secret_count(const struct sbx_proxy *px);
void sbx_proxy_secret_env(const struct sbx_proxy *px, size_t i, const char **name,
			  const char **placeholder);
/* The sandbox CA certificate (PEM) the guest must trust, or NULL when
 * TLS is not intercepted. */
const char *sbx_proxy_ca_pem(const struct sbx_proxy *px);

#endif
