/* SPDX-License-Identifier: Apache-2.0 */
#include <gio/gio.h>
#include <string.h>

#include "eb-multipart.h"

typedef enum {
        ST_DATA,          /* the preamble (no part yet) or a part's data: looking for a delimiter */
        ST_BOUNDARY,      /* all of "\n--" boundary matched; the next byte decides */
        ST_BOUNDARY_DASH, /* ... and then one '-' */
        ST_LINE,          /* a delimiter: spaces and tabs up to its line break */
        ST_LINE_CR,       /* ... and then '\r' */
        ST_HEADERS,
        ST_DONE,
        ST_FAILED,
} State;

struct EbMultipart {
        EbMultipartCallbacks cb;
        gpointer data;
        guint8 *delim; /* "\n--" boundary */
        gsize delim_len;
        State state;
        /* Bytes of delim matched at the end of the input so far and not passed on as data yet;
         * delim_len in ST_BOUNDARY and ST_BOUNDARY_DASH. Since the boundary has no line breaks,
         * such a match can only be a prefix of delim, so it needs no buffer. */
        gsize match;
        gboolean cr;   /* a '\r' before the match (or at the end of the input), held back too */
        gboolean virt; /* delim[0] was not in the input but implied, at the start of the body or
                        * of a part's data, where the previous line break has been consumed */
        gboolean in_part;
        guint parts;
        GByteArray *headers;
        gsize line_start; /* of the header line being collected */
        GError *failure;
};

static gboolean is_tspecial(guchar c) {
        return c != 0 && strchr("()<>@,;:\\\"/[]?=", c) != NULL;
}

static gboolean is_token_char(guchar c) {
        return c > 0x20 && c < 0x7f && !is_tspecial(c);
}

static const char *skip_space(const char *s) {
        while (*s == ' ' || *s == '\t')
                s++;
        return s;
}

/* A token or quoted-string, appended to out, as Go's mime.consumeValue. */
static gboolean consume_value(const char **s, GString *out) {
        const char *p = *s;

        if (*p != '"') {
                while (is_token_char(*p))
                        p++;
                if (p == *s)
                        return FALSE;
                g_string_append_len(out, *s, p - *s);
                *s = p;
                return TRUE;
        }
        for (p++; *p; p++) {
                if (*p == '"') {
                        *s = p + 1;
                        return TRUE;
                }
                /* Old browsers send Windows paths unescaped ("C:\dir\a.txt"), and nothing escapes
                 * a letter or digit needlessly: a backslash before a non-special is a backslash. */
                if (*p == '\\' && is_tspecial(p[1]))
                        p++;
                else if (*p == '\r' || *p == '\n')
                        return FALSE;
                g_string_append_c(out, *p);
        }
        return FALSE; /* no closing quote */
}

/* token or token/token, nothing else */
static gboolean valid_media_type(const char *s) {
        const char *p = s;

        while (is_token_char(*p))
                p++;
        if (p == s)
                return FALSE;
        if (*p == 0)
                return TRUE;
        if (*p != '/')
                return FALSE;
        s = ++p;
        while (is_token_char(*p))
                p++;
        return p != s && *p == 0;
}

/* A Content-Type or Content-Disposition value as Go's mime.ParseMediaType: the type lowercased,
 * the parameters keyed by lowercased name. FALSE when malformed, including a parameter given
 * twice with different values, which could mean different things to different parsers. */
static gboolean parse_media(const char *s, char **type_out, GHashTable **params_out) {
        const char *semi = strchr(s, ';');
        g_autofree char *type = g_ascii_strdown(s, semi ? semi - s : -1);
        g_autoptr(GHashTable) params = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
        const char *p = semi ? semi : "";

        g_strstrip(type);
        if (!valid_media_type(type))
                return FALSE;
        for (;;) {
                g_autofree char *key = NULL;
                g_autoptr(GString) value = g_string_new(NULL);
                const char *start, *old;

                p = skip_space(p);
                if (*p == 0)
                        break;
                if (*p != ';')
                        return FALSE;
                p = skip_space(p + 1);
                if (*p == 0)
                        break; /* a trailing semicolon */
                start = p;
                while (is_token_char(*p))
                        p++;
                if (p == start)
                        return FALSE;
                key = g_ascii_strdown(start, p - start);
                p = skip_space(p);
                if (*p != '=')
                        return FALSE;
                p = skip_space(p + 1);
                if (!consume_value(&p, value))
                        return FALSE;
                old = g_hash_table_lookup(params, key);
                if (old && strcmp(old, value->str) != 0)
                        return FALSE;
                if (!old)
                        g_hash_table_insert(params, g_steal_pointer(&key),
                                            g_string_free(g_steal_pointer(&value), FALSE));
        }
        *type_out = g_steal_pointer(&type);
        *params_out = g_steal_pointer(&params);
        return TRUE;
}

/* An RFC 2231/5987 extended value, charset'language'percent-encoded. NULL unless the charset is
 * UTF-8 or US-ASCII and the encoding is good, as Go's mime.decode2231Enc. */
static char *decode_ext_value(const char *v, gsize *len) {
        const char *q1 = strchr(v, '\''), *q2 = q1 ? strchr(q1 + 1, '\'') : NULL;
        g_autoptr(GString) out = NULL;
        gsize charset_len;

        if (!q2)
                return NULL;
        charset_len = q1 - v;
        if (!(charset_len == 5 && g_ascii_strncasecmp(v, "utf-8", 5) == 0) &&
            !(charset_len == 8 && g_ascii_strncasecmp(v, "us-ascii", 8) == 0))
                return NULL;
        out = g_string_new(NULL);
        for (const char *p = q2 + 1; *p; p++) {
                if (*p != '%') {
                        g_string_append_c(out, *p);
                        continue;
                }
                if (!g_ascii_isxdigit(p[1]) || !g_ascii_isxdigit(p[2]))
                        return NULL;
                g_string_append_c(out, (char) (g_ascii_xdigit_value(p[1]) << 4 | g_ascii_xdigit_value(p[2])));
                p += 2;
        }
        *len = out->len;
        return g_string_free(g_steal_pointer(&out), FALSE);
}

/* key* (extended) takes precedence over key; NULL when neither is usable. */
static gboolean param_value(GHashTable *params, const char *key, char **out, GError **error) {
        g_autofree char *ext_key = g_strconcat(key, "*", NULL);
        const char *ext = g_hash_table_lookup(params, ext_key);

        if (ext) {
                gsize len = 0;
                g_autofree char *decoded = decode_ext_value(ext, &len);

                if (decoded && strlen(decoded) != len) {
                        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                                    "The multipart %s parameter holds a NUL character", ext_key);
                        return FALSE;
                }
                if (decoded) {
                        *out = g_steal_pointer(&decoded);
                        return TRUE;
                }
        }
        *out = g_strdup(g_hash_table_lookup(params, key));
        return TRUE;
}

char *eb_multipart_boundary(const char *content_type) {
        g_autofree char *type = NULL;
        g_autoptr(GHashTable) params = NULL;
        const char *boundary;

        if (!content_type || !parse_media(content_type, &type, &params))
                return NULL;
        if (strcmp(type, "multipart/form-data") != 0)
                return NULL;
        boundary = g_hash_table_lookup(params, "boundary");
        if (!boundary || *boundary == 0 || strlen(boundary) > EB_MULTIPART_BOUNDARY_MAX)
                return NULL;
        /* The parser relies on a boundary without line breaks; no sender uses other controls. */
        for (const char *p = boundary; *p; p++) {
                if ((guchar) *p < 0x20 || *p == 0x7f)
                        return NULL;
        }
        return g_strdup(boundary);
}

EbMultipart *eb_multipart_new(const char *boundary, const EbMultipartCallbacks *callbacks, gpointer data) {
        EbMultipart *mp;
        gsize len;

        g_return_val_if_fail(boundary != NULL, NULL);
        g_return_val_if_fail(callbacks != NULL, NULL);
        len = strlen(boundary);
        g_return_val_if_fail(len > 0 && len <= EB_MULTIPART_BOUNDARY_MAX, NULL);
        g_return_val_if_fail(strpbrk(boundary, "\r\n") == NULL, NULL);

        mp = g_new0(EbMultipart, 1);
        mp->cb = *callbacks;
        mp->data = data;
        mp->delim_len = len + 3;
        mp->delim = (guint8 *) g_strconcat("\n--", boundary, NULL);
        mp->headers = g_byte_array_new();
        /* The body may start with the delimiter: a line break is implied before it. */
        mp->state = ST_DATA;
        mp->match = 1;
        mp->virt = TRUE;
        return mp;
}

void eb_multipart_free(EbMultipart *mp) {
        if (!mp)
                return;
        g_free(mp->delim);
        g_byte_array_unref(mp->headers);
        g_clear_error(&mp->failure);
        g_free(mp);
}

static gboolean deliver(EbMultipart *mp, const guint8 *buf, gsize len, GError **error) {
        if (len == 0 || !mp->in_part || !mp->cb.part_data)
                return TRUE; /* the preamble, or nobody wants the data */
        return mp->cb.part_data(mp->data, buf, len, error);
}

/* What was held back as a possible delimiter is data after all: give it back from the delimiter
 * itself, plus the '-' seen after it if dash. */
static gboolean deliver_held(EbMultipart *mp, gboolean dash, GError **error) {
        guint8 buf[1 + 3 + EB_MULTIPART_BOUNDARY_MAX + 1];
        gsize n = 0, from = mp->virt ? 1 : 0;

        if (mp->cr)
                buf[n++] = '\r';
        if (mp->match > from) {
                memcpy(buf + n, mp->delim + from, mp->match - from);
                n += mp->match - from;
        }
        if (dash)
                buf[n++] = '-';
        mp->state = ST_DATA;
        mp->match = 0;
        mp->cr = FALSE;
        mp->virt = FALSE;
        return deliver(mp, buf, n, error);
}

static gboolean scan_data(EbMultipart *mp, const guint8 **pp, const guint8 *end, GError **error) {
        const guint8 *p = *pp, *stop, *hit, *nl;
        gsize window;

        /* A match held back from the previous feed goes on a byte at a time; it is settled within
         * delim_len bytes. */
        while (p < end && (mp->match > 0 || mp->cr)) {
                if (*p != mp->delim[mp->match]) {
                        if (!deliver_held(mp, FALSE, error))
                                return FALSE;
                        continue; /* *p may start a match itself */
                }
                p++;
                if (++mp->match == mp->delim_len) {
                        mp->state = ST_BOUNDARY;
                        *pp = p;
                        return TRUE;
                }
        }
        if (p == end) {
                *pp = p;
                return TRUE;
        }

        hit = memmem(p, end - p, mp->delim, mp->delim_len);
        if (hit) {
                stop = hit;
                mp->match = mp->delim_len;
                mp->state = ST_BOUNDARY;
                *pp = hit + mp->delim_len;
        } else {
                /* The end may hold the start of a delimiter. '\n' is only at its start, so only the
                 * last '\n' of the final delim_len - 1 bytes can begin it. */
                window = MIN((gsize) (end - p), mp->delim_len - 1);
                nl = memrchr(end - window, '\n', window);
                stop = end;
                if (nl && memcmp(nl, mp->delim, end - nl) == 0) {
                        stop = nl;
                        mp->match = end - nl;
                }
                *pp = end;
        }
        /* A '\r' before the delimiter belongs to it; one at the very end may do so. */
        if (stop > p && stop[-1] == '\r') {
                stop--;
                mp->cr = TRUE;
        }
        return deliver(mp, p, stop - p, error);
}

static gboolean end_part(EbMultipart *mp, GError **error) {
        mp->match = 0;
        mp->cr = FALSE;
        mp->virt = FALSE;
        if (!mp->in_part)
                return TRUE;
        mp->in_part = FALSE;
        return !mp->cb.part_end || mp->cb.part_end(mp->data, error);
}

/* After "--" boundary and spaces, neither a line break nor "--". */
static gboolean bad_delimiter_line(EbMultipart *mp, GError **error) {
        /* In the preamble the line was not a delimiter after all (as in Go); scan on from the
         * byte that did not fit. */
        if (mp->parts == 0) {
                mp->state = ST_DATA;
                return TRUE;
        }
        g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                            "Unexpected characters after a multipart boundary");
        return FALSE;
}

static gboolean begin_headers(EbMultipart *mp, GError **error) {
        if (mp->parts >= EB_MULTIPART_PARTS_MAX) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                            "The multipart body has more than %d parts", EB_MULTIPART_PARTS_MAX);
                return FALSE;
        }
        mp->parts++;
        g_byte_array_set_size(mp->headers, 0);
        mp->line_start = 0;
        mp->state = ST_HEADERS;
        return TRUE;
}

static gboolean malformed_header(GError **error) {
        g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "Malformed multipart part header");
        return FALSE;
}

static void trim_space(const char **s, gsize *len) {
        while (*len > 0 && (**s == ' ' || **s == '\t')) {
                (*s)++;
                (*len)--;
        }
        while (*len > 0 && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
                (*len)--;
}

typedef enum { H_NONE, H_OTHER, H_DISPOSITION, H_TYPE } HeaderKind;

/* The headers collected (without the empty line) are complete: parse them and begin the part. */
static gboolean begin_part(EbMultipart *mp, GError **error) {
        const char *block = (const char *) mp->headers->data;
        gsize len = mp->line_start;
        g_autoptr(GString) value = g_string_new(NULL);
        g_autofree char *disposition = NULL, *content_type = NULL;
        g_autofree char *name = NULL, *filename = NULL;
        HeaderKind kind = H_NONE;

        for (gsize at = 0; at <= len; ) {
                const char *line = block + at, *nl, *colon;
                gsize line_len;

                /* The header just collected is complete: keep it if wanted and the first. */
                if (at == len || (line[0] != ' ' && line[0] != '\t')) {
                        if (kind == H_DISPOSITION && !disposition)
                                disposition = g_strndup(value->str, value->len);
                        else if (kind == H_TYPE && !content_type)
                                content_type = g_strndup(value->str, value->len);
                        if (at == len)
                                break;
                }
                nl = memchr(line, '\n', len - at); /* every collected line ends in one */
                g_assert(nl != NULL);
                line_len = nl - line;
                at += line_len + 1;
                if (line_len > 0 && line[line_len - 1] == '\r')
                        line_len--;
                for (gsize i = 0; i < line_len; i++) {
                        guchar c = line[i];
                        if ((c < 0x20 && c != '\t') || c == 0x7f)
                                return malformed_header(error);
                }
                /* A continuation line, joined to the previous one with one space. */
                if (line[0] == ' ' || line[0] == '\t') {
                        if (kind == H_NONE)
                                return malformed_header(error);
                        trim_space(&line, &line_len);
                        if (line_len > 0 && value->len > 0)
                                g_string_append_c(value, ' ');
                        g_string_append_len(value, line, line_len);
                        continue;
                }
                colon = memchr(line, ':', line_len);
                if (!colon || colon == line)
                        return malformed_header(error);
                for (const char *c = line; c < colon; c++) {
                        if (!is_token_char(*c))
                                return malformed_header(error);
                }
                if (colon - line == 19 && g_ascii_strncasecmp(line, "Content-Disposition", 19) == 0)
                        kind = H_DISPOSITION;
                else if (colon - line == 12 && g_ascii_strncasecmp(line, "Content-Type", 12) == 0)
                        kind = H_TYPE;
                else
                        kind = H_OTHER;
                line_len -= colon + 1 - line;
                line = colon + 1;
                trim_space(&line, &line_len);
                g_string_truncate(value, 0);
                g_string_append_len(value, line, line_len);
        }

        if (disposition) {
                g_autofree char *type = NULL;
                g_autoptr(GHashTable) params = NULL;

                /* Go's FormName wants form-data; its FileName takes any disposition type. A
                 * malformed header has no parameters, as in Go. */
                if (parse_media(disposition, &type, &params)) {
                        if (strcmp(type, "form-data") == 0 && !param_value(params, "name", &name, error))
                                return FALSE;
                        if (!param_value(params, "filename", &filename, error))
                                return FALSE;
                }
        }

        mp->in_part = TRUE;
        /* The line break ending the headers may also be the one before the next delimiter. */
        mp->state = ST_DATA;
        mp->match = 1;
        mp->virt = TRUE;
        mp->cr = FALSE;
        return !mp->cb.part_begin || mp->cb.part_begin(mp->data, name, filename, content_type, error);
}

static gboolean scan_headers(EbMultipart *mp, const guint8 **pp, const guint8 *end, GError **error) {
        const guint8 *p = *pp;

        while (p < end) {
                const guint8 *nl = memchr(p, '\n', end - p);
                gsize take = (nl ? nl + 1 : end) - p, line_len;

                if (mp->headers->len + take > EB_MULTIPART_HEADER_MAX) {
                        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                                    "A multipart part has more than %d bytes of headers",
                                    EB_MULTIPART_HEADER_MAX);
                        return FALSE;
                }
                g_byte_array_append(mp->headers, p, (guint) take);
                p += take;
                if (!nl)
                        break;
                line_len = mp->headers->len - mp->line_start;
                if (line_len == 1 || (line_len == 2 && mp->headers->data[mp->line_start] == '\r')) {
                        *pp = p;
                        return begin_part(mp, error);
                }
                mp->line_start = mp->headers->len;
        }
        *pp = p;
        return TRUE;
}

static gboolean process(EbMultipart *mp, const guint8 *p, const guint8 *end, GError **error) {
        while (p < end) {
                switch (mp->state) {
                case ST_DATA:
                        if (!scan_data(mp, &p, end, error))
                                return FALSE;
                        break;
                case ST_BOUNDARY:
                        if (*p == '-') {
                                mp->state = ST_BOUNDARY_DASH;
                                p++;
                        } else if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
                                if (!end_part(mp, error))
                                        return FALSE;
                                mp->state = ST_LINE;
                        } else if (!deliver_held(mp, FALSE, error)) {
                                return FALSE;
                        }
                        break;
                case ST_BOUNDARY_DASH:
                        if (*p != '-') {
                                if (!deliver_held(mp, TRUE, error))
                                        return FALSE;
                                break;
                        }
                        mp->state = ST_DONE;
                        return end_part(mp, error);
                case ST_LINE:
                        if (*p == ' ' || *p == '\t') {
                                p++;
                        } else if (*p == '\r') {
                                mp->state = ST_LINE_CR;
                                p++;
                        } else if (*p == '\n') {
                                p++;
                                if (!begin_headers(mp, error))
                                        return FALSE;
                        } else if (!bad_delimiter_line(mp, error)) {
                                return FALSE;
                        }
                        break;
                case ST_LINE_CR:
                        if (*p == '\n') {
                                p++;
                                if (!begin_headers(mp, error))
                                        return FALSE;
                        } else if (!bad_delimiter_line(mp, error)) {
                                return FALSE;
                        }
                        break;
                case ST_HEADERS:
                        if (!scan_headers(mp, &p, end, error))
                                return FALSE;
                        break;
                case ST_DONE:
                        return TRUE; /* the epilogue */
                case ST_FAILED:
                        g_assert_not_reached();
                }
        }
        return TRUE;
}

static gboolean fail(EbMultipart *mp, GError *local, GError **error) {
        /* A callback may return FALSE without saying why. */
        if (!local)
                local = g_error_new_literal(G_IO_ERROR, G_IO_ERROR_FAILED,
                                            "Multipart processing was stopped");
        mp->failure = local;
        mp->state = ST_FAILED;
        g_propagate_error(error, g_error_copy(local));
        return FALSE;
}

gboolean eb_multipart_feed(EbMultipart *mp, const guint8 *buf, gsize len, GError **error) {
        GError *local = NULL;

        g_return_val_if_fail(mp != NULL, FALSE);
        g_return_val_if_fail(buf != NULL || len == 0, FALSE);

        if (mp->state == ST_FAILED) {
                g_propagate_error(error, g_error_copy(mp->failure));
                return FALSE;
        }
        if (len == 0 || process(mp, buf, buf + len, &local))
                return TRUE;
        return fail(mp, local, error);
}

gboolean eb_multipart_finish(EbMultipart *mp, GError **error) {
        const char *message;

        g_return_val_if_fail(mp != NULL, FALSE);

        if (mp->state == ST_DONE)
                return TRUE;
        if (mp->state == ST_FAILED) {
                g_propagate_error(error, g_error_copy(mp->failure));
                return FALSE;
        }
        if (mp->state == ST_HEADERS && mp->headers->len > 0)
                message = "The multipart body ends inside a part's headers";
        else if (mp->state == ST_DATA && mp->parts == 0)
                message = "The multipart body has no boundary delimiter";
        else
                message = "The multipart body ends before its closing boundary delimiter";
        return fail(mp, g_error_new_literal(G_IO_ERROR, G_IO_ERROR_INVALID_DATA, message), error);
}

gboolean eb_multipart_done(EbMultipart *mp) {
        g_return_val_if_fail(mp != NULL, FALSE);
        return mp->state == ST_DONE;
}
