/* The reference for "the same error for the same mistake in every front
 * end": each mistake of error_cases.json made through the C API, printed
 * as "NAME<TAB>CODE<TAB>MESSAGE" lines. The Python, Node and CLI tests
 * make the same mistakes and compare code and message with these lines.
 * No VM is booted: every case fails in option validation. */
#include <sandbox.h>
#include <stdio.h>
#include <string.h>

static const char *const allow_bad[] = {"bad pattern!", NULL};
static const char *const hosts_empty[] = {NULL};
static const char *const hosts_ok[] = {"api.example.test", NULL};
static const char *const hosts_bad[] = {"bad host!", NULL};
static const char *const env_bad[] = {"1BAD=x", NULL};
static const char *const env_token[] = {"TOKEN=x", NULL};
static const char *const dns_bad[] = {"not-an-address", NULL};

static void set_secret(sandbox_options_t *o, const char *const *hosts)
{
	static sandbox_secret_t secret;
	secret = (sandbox_secret_t){"TOKEN", "s3cret", hosts, 0};
	o->secrets = &secret;
	o->secrets_count = 1;
}

static void set_volume(sandbox_options_t *o, const char *host, const char *guest,
		       unsigned int flags)
{
	static sandbox_volume_t volume;
	volume = (sandbox_volume_t){host, guest, flags};
	o->volumes = &volume;
	o->volumes_count = 1;
}

static void apply(const char *name, sandbox_options_t *o)
{
	if (!strcmp(name, "allow_net_malformed"))
		o->allow_net = allow_bad;
	else if (!strcmp(name, "secret_no_hosts"))
		set_secret(o, hosts_empty);
	else if (!strcmp(name, "secret_bad_host"))
		set_secret(o, hosts_bad);
	else if (!strcmp(name, "secret_also_in_env")) {
		set_secret(o, hosts_ok);
		o->env = env_token;
	} else if (!strcmp(name, "volume_host_dir_missing"))
		set_volume(o, "/nonexistent/sbx-error-case", "/data", 0);
	else if (!strcmp(name, "volume_over_etc"))
		set_volume(o, "/tmp", "/etc", SANDBOX_VOLUME_READONLY);
	else if (!strcmp(name, "volume_guest_relative"))
		set_volume(o, "/tmp", "data", 0);
	else if (!strcmp(name, "dns_server_not_address"))
		o->dns_servers = dns_bad;
	else if (!strcmp(name, "tls_ca_file_missing"))
		o->tls_ca_file = "/nonexistent/sbx-error-case-ca.pem";
	else if (!strcmp(name, "tls_passthrough_malformed"))
		o->tls_passthrough = allow_bad;
	else if (!strcmp(name, "memory_too_small"))
		o->memory_mb = 1;
	else if (!strcmp(name, "env_bad_name"))
		o->env = env_bad;
	else if (!strcmp(name, "workdir_relative"))
		o->workdir = "tmp";
}

static const char *const cases[] = {
    "allow_net_malformed",	 "secret_no_hosts",	    "secret_bad_host",
    "secret_also_in_env",	 "volume_host_dir_missing", "volume_over_etc",
    "volume_guest_relative",	 "dns_server_not_address",  "tls_ca_file_missing",
    "tls_passthrough_malformed", "memory_too_small",	    "env_bad_name",
    "workdir_relative",
};

int main(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sandbox_options_t o;
		sandbox_options_init(&o, SANDBOX_OPTIONS_VERSION);
		apply(cases[i], &o);
		sandbox_t *sb = NULL;
		int rc = sandbox_create(&sb, &o, 0);
		if (rc >= 0 || sb) {
			fprintf(stderr, "FAIL: case %s: create succeeded\n", cases[i]);
			sandbox_free(sb);
			return 1;
		}
		printf("%s\t%d\t%s\n", cases[i], rc, sandbox_last_error());
	}
	return 0;
}
