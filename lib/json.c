/* Minimal JSON writer. Audit lines carry guest-controlled strings (argv,
 * later DNS names and HTTP paths), so escaping must be total: every
 * control byte escaped, invalid UTF-8 replaced, never a raw quote. */
#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sbx_json_init(struct sbx_json *j)
{
	memset(j, 0, sizeof *j);
}

void sbx_json_free(struct sbx_json *j)
{
	free(j->buf);
	memset(j, 0, sizeof *j);
}

static void put(struct sbx_json *j, const char *s, size_t n)
{
	if (j->oom)
		return;
	if (j->len + n + 1 > j->cap) {
		size_t cap = j->cap ? j->cap : 256;
		while (cap < j->len + n + 1)
			cap *= 2;
		char *b = realloc(j->buf, cap);
		if (!b) {
			j->oom = 1;
			return;
		}
		j->buf = b;
		j->cap = cap;
	}
	memcpy(j->buf + j->len, s, n);
	j->len += n;
	j->buf[j->len] = '\0';
}

static void puts_(struct sbx_json *j, const char *s)
{
	put(j, s, strlen(s));
}

/* Length of a valid UTF-8 sequence at s (max n bytes), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len;
	unsigned min;
	if (c < 0x80)
		return 1;
	if ((c & 0xe0) == 0xc0) {
		len = 2;
		min = 0x80;
		c &= 0x1f;
	} else if ((c & 0xf0) == 0xe0) {
		len = 3;
		min = 0x800;
		c &= 0x0f;
	} else if ((c & 0xf8) == 0xf0) {
		len = 4;
		min = 0x10000;
		c &= 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	return len;
}

static void put_escaped(struct sbx_json *j, const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	put(j, "\"", 1);
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		char esc[8];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			put(j, esc, 2);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(esc, sizeof esc, "\\u%04x", c);
			put(j, esc, 6);
			i++;
		} else {
			size_t l = utf8_len(s + i, n - i);
			if (l == 0) {
				puts_(j, "\\ufffd");
				i++;
			} else {
				put(j, (const char *)s + i, l);
				i += l;
			}
		}
	}
	put(j, "\"", 1);
}

static void key(struct sbx_json *j, const char *k)
{
	if (j->need_comma)
		put(j, ",", 1);
	j->need_comma = 1;
	if (k) {
		put_escaped(j, k, strlen(k));
		put(j, ":", 1);
	}
}

void sbx_json_open(struct sbx_json *j, const char *k)
{
	key(j, k);
	put(j, "{", 1);
	j->need_comma = 0;
}

void sbx_json_close(struct sbx_json *j)
{
	put(j, "}", 1);
	j->need_comma = 1;
}

void sbx_json_open_array(struct sbx_json *j, const char *k)
{
	key(j, k);
	put(j, "[", 1);
	j->need_comma = 0;
}

void sbx_json_close_array(struct sbx_json *j)
{
	put(j, "]", 1);
	j->need_comma = 1;
}

void sbx_json_strn(struct sbx_json *j, const char *k, const char *v, size_t n)
{
	key(j, k);
	if (!v)
		puts_(j, "null");
	else
		put_escaped(j, v, n);
}

void sbx_json_str(struct sbx_json *j, const char *k, const char *v)
{
	sbx_json_strn(j, k, v, v ? strlen(v) : 0);
}

void sbx_json_int(struct sbx_json *j, const char *k, int64_t v)
{
	char b[32];
	key(j, k);
	snprintf(b, sizeof b, "%lld", (long long)v);
	puts_(j, b);
}

void sbx_json_double(struct sbx_json *j, const char *k, double v)
{
	char b[48];
	key(j, k);
	snprintf(b, sizeof b, "%.3f", v);
	puts_(j, b);
}

void sbx_json_bool(struct sbx_json *j, const char *k, int v)
{
	key(j, k);
	puts_(j, v ? "true" : "false");
}

void sbx_json_null(struct sbx_json *j, const char *k)
{
	key(j, k);
	puts_(j, "null");
}
