/* Minimal JSON writer for audit events: objects, strings, numbers. */
#ifndef SBX_JSON_H
#define SBX_JSON_H

#include <stddef.h>
#include <stdint.h>

struct sbx_json {
	char *buf;
	size_t len;
	size_t cap;
	int oom;
	int need_comma;
};

void sbx_json_init(struct sbx_json *j);
void sbx_json_free(struct sbx_json *j);
void sbx_json_open(struct sbx_json *j, const char *key); /* key NULL: bare '{' */
void sbx_json_close(struct sbx_json *j);
void sbx_json_open_array(struct sbx_json *j, const char *key);
void sbx_json_close_array(struct sbx_json *j);
/* String values may hold any bytes: invalid UTF-8 becomes U+FFFD. */
void sbx_json_str(struct sbx_json *j, const char *key, const char *val);
void sbx_json_strn(struct sbx_json *j, const char *key, const char *val, size_t n);
void sbx_json_int(struct sbx_json *j, const char *key, int64_t v);
void sbx_json_double(struct sbx_json *j, const char *key, double v);
void sbx_json_bool(struct sbx_json *j, const char *key, int v);
void sbx_json_null(struct sbx_json *j, const char *key);

#endif
