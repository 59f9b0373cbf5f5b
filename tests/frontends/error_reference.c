/* The reference for "the same error for the same mistake in every front
 * end": each mistake of error_cases.json made through the C API, printed
 * as "NAME<TAB>CODE<TAB>MESSAGE" lines. The Python, Node and CLI tests
 * make the same mistakes and compare code and message with these lines.
 * No VM is booted: every case fails in option validation. */
#include <sandbox.h>
#include <stdio.h>
#include <string.h>

static const char *const allow_example[] = {"example.com", NULL};
static const char *const allow_empty[] = {NULL};
static const char *const allow_bad[] = {"bad pattern!", NULL};
static const char *const hosts_ok[] = {"api.example.com", NULL};
static const char *const hosts_bad[] = {"bad host!", NULL};
static const char *const env_bad[] = {"1BAD=x", NULL};

static void apply(const char *name, sandbox_options_t *o)
{
	static sandbox_secret_t secret_ok = {"TOKEN", "s3cret", hosts_ok, 0};
	static sandbox_secret_t secret_bad = {"TOKEN", "s3cret", hosts_bad, 0};
	static sandbox_volume_t volume = {"/tmp", "/data", SANDBOX_VOLUME_READONLY};
	if (!strcmp(name, "allow_net_unsupported"))
		o->allow_net = allow_example;
	else if (!strcmp(name, "allow_net_empty"))
		o->allow_net = allow_empty;
	else if (!strcmp(name, "allow_net_malformed"))
		o->allow_net = allow_bad;
	else if (!strcmp(name, "secret_unsupported")) {
		o->secrets = &secret_ok;
		o->secrets_count = 1;
	} else if (!strcmp(name, "secret_bad_host")) {
		o->secrets = &secret_bad;
		o->secrets_count = 1;
	} else if (!strcmp(name, "volume_unsupported")) {
		o->volumes = &volume;
		o->volumes_count = 1;
	} else if (!strcmp(name, "memory_too_small"))
		o->memory_mb = 1;
	else if (!strcmp(name, "env_bad_name"))
		o->env = env_bad;
	else if (!strcmp(name, "workdir_relative"))
		o->workdir = "tmp";
}

static const char *const cases[] = {
    "allow_net_unsupported", "allow_net_empty", "allow_net_malformed",
    "secret_unsupported",    "secret_bad_host", "volume_unsupported",
    "memory_too_small",	     "env_bad_name",	"workdir_relative",
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
