/* execd-bench-client: a lean HTTP/1.1 client for the execd benchmarks.
 *
 * It sends POST /command {"command": CMD} to the bridge, parses the chunked
 * text/event-stream response and its SSE events, and checks every stream:
 * the first event is init with a 32-hex id, exactly one terminal event comes
 * last, the output is what the chosen --expect mode says, and the body ends
 * with the 0-length chunk.  Requests run over --concurrency keep-alive
 * connections driven by poll(), so one program covers sequential latency,
 * throughput, many concurrent streams and bulk load.
 *
 * Only libc: the point is that the client must not dominate what is measured.
 * Results go to stdout as "key value" lines; any functional problem (wrong
 * status, malformed stream, wrong output, hang) is printed on stderr and makes
 * the exit status non-zero.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum expect_mode {
        EXPECT_EMPTY,   /* no output, execution_complete */
        EXPECT_X,       /* exactly one stdout "x", no stderr, execution_complete */
        EXPECT_ZEROS,   /* stdout lines of '0's of a fixed length, last one partial */
};

enum parse_state {
        P_HEADERS,
        P_CHUNK_SIZE,
        P_CHUNK_DATA,
        P_CHUNK_CRLF,
        P_TRAILERS,
        P_BODY_LENGTH,
        P_DONE,
};

typedef struct {
        char *p;
        size_t len, cap;
} Buf;

typedef struct {
        int n_events;
        bool saw_init;
        int n_terminal;
        bool terminal_ok;           /* execution_complete (not error) */
        int64_t n_stdout, n_stderr, n_ping;
        int64_t text_bytes;         /* sum of decoded text lengths of stdout events */
        int64_t n_partial;          /* stdout lines shorter than the full length */
        double t_init;
} Stream;

typedef struct {
        int idx;
        int fd;
        bool connecting;
        bool busy;                  /* a request is in flight */
        bool reused;                /* the connection served a request before */
        bool got_bytes;
        int req_index;
        double t_start;
        char *req;
        size_t req_len, req_off;

        enum parse_state ps;
        Buf hdr;
        Buf line;                   /* chunk-size / trailer / CRLF line */
        int status;
        bool chunked, conn_close, is_sse;
        int64_t clen;
        uint64_t chunk_left;
        Buf errbody;

        Buf sline;                  /* a partial SSE line */
        Buf data;                   /* the data of the current event */
        bool event_has_data;
        Stream st;
} Conn;

/* options */
static const char *opt_host = "127.0.0.1";
static int opt_port;
static const char *opt_token = "";
static const char *opt_command;
static int opt_requests = 1;
static int opt_warmup;
static int opt_concurrency = 1;
static double opt_timeout = 300;
static enum expect_mode opt_expect = EXPECT_EMPTY;
static int64_t opt_zero_total;      /* EXPECT_ZEROS: bytes the command writes */
static int64_t opt_zero_line;       /* EXPECT_ZEROS: bytes per line, newline included */
static const char *opt_spawn_shell; /* interleave a SHELL -c true baseline after each request */

/* results */
static double *samples;
static int n_samples;
static double *base_samples;
static int n_base_samples;
static double *init_samples;        /* request start to the init event */
static int n_init_samples;
static int64_t total_stdout, total_payload;
static int n_reconnects, n_connects;
static double t_last_init, t_first_done, t_last_done, t_first_start;
static int64_t total_pings;
static int64_t n_reads, n_read_bytes, n_chunks;

static char *zeros;                 /* opt_zero_line - 1 '0' characters */

static double now(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((format(printf, 2, 3), noreturn))
static void fail(const Conn *c, const char *fmt, ...)
{
        va_list ap;

        if (c)
                fprintf(stderr, "execd-bench-client: FUNCTIONAL ERROR (connection %d, request %d): ",
                        c->idx, c->req_index);
        else
                fprintf(stderr, "execd-bench-client: FUNCTIONAL ERROR: ");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(1);
}

static void buf_reserve(Buf *b, size_t extra)
{
        if (b->len + extra + 1 <= b->cap)
                return;
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + extra + 1)
                cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) {
                perror("realloc");
                exit(1);
        }
        b->cap = cap;
}

static void buf_add(Buf *b, const void *p, size_t n)
{
        buf_reserve(b, n);
        memcpy(b->p + b->len, p, n);
        b->len += n;
        b->p[b->len] = '\0';
}

static void buf_addc(Buf *b, char ch)
{
        buf_reserve(b, 1);
        b->p[b->len++] = ch;
        b->p[b->len] = '\0';
}

static void buf_clear(Buf *b)
{
        b->len = 0;
        if (b->p)
                b->p[0] = '\0';
}

/* ---- a minimal JSON reader: enough for the top level of one SSE event ---- */

static const char *json_ws(const char *p, const char *e)
{
        while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
                p++;
        return p;
}

static int hexval(char ch)
{
        if (ch >= '0' && ch <= '9')
                return ch - '0';
        if (ch >= 'a' && ch <= 'f')
                return ch - 'a' + 10;
        if (ch >= 'A' && ch <= 'F')
                return ch - 'A' + 10;
        return -1;
}

static void utf8_put(Buf *out, uint32_t cp)
{
        char u[4];
        size_t n;

        if (cp < 0x80) {
                u[0] = cp;
                n = 1;
        } else if (cp < 0x800) {
                u[0] = 0xc0 | (cp >> 6);
                u[1] = 0x80 | (cp & 0x3f);
                n = 2;
        } else if (cp < 0x10000) {
                u[0] = 0xe0 | (cp >> 12);
                u[1] = 0x80 | ((cp >> 6) & 0x3f);
                u[2] = 0x80 | (cp & 0x3f);
                n = 3;
        } else {
                u[0] = 0xf0 | (cp >> 18);
                u[1] = 0x80 | ((cp >> 12) & 0x3f);
                u[2] = 0x80 | ((cp >> 6) & 0x3f);
                u[3] = 0x80 | (cp & 0x3f);
                n = 4;
        }
        buf_add(out, u, n);
}

/* Parse a JSON string at *pp (at the opening quote); decode into out if not NULL. */
static bool json_string(const char **pp, const char *e, Buf *out)
{
        const char *p = *pp;

        if (p >= e || *p != '"')
                return false;
        p++;
        while (p < e) {
                const char *q = p;
                while (q < e && *q != '"' && *q != '\\')
                        q++;
                if (out && q > p)
                        buf_add(out, p, q - p);
                p = q;
                if (p >= e)
                        return false;
                if (*p == '"') {
                        *pp = p + 1;
                        return true;
                }
                /* backslash */
                if (p + 1 >= e)
                        return false;
                char esc = p[1];
                p += 2;
                char ch;
                switch (esc) {
                case '"': ch = '"'; break;
                case '\\': ch = '\\'; break;
                case '/': ch = '/'; break;
                case 'b': ch = '\b'; break;
                case 'f': ch = '\f'; break;
                case 'n': ch = '\n'; break;
                case 'r': ch = '\r'; break;
                case 't': ch = '\t'; break;
                case 'u': {
                        uint32_t cp = 0;
                        if (e - p < 4)
                                return false;
                        for (int i = 0; i < 4; i++) {
                                int h = hexval(p[i]);
                                if (h < 0)
                                        return false;
                                cp = cp * 16 + h;
                        }
                        p += 4;
                        if (cp >= 0xd800 && cp < 0xdc00 && e - p >= 6 && p[0] == '\\' && p[1] == 'u') {
                                uint32_t lo = 0;
                                bool ok = true;
                                for (int i = 0; i < 4; i++) {
                                        int h = hexval(p[2 + i]);
                                        if (h < 0)
                                                ok = false;
                                        lo = lo * 16 + (h < 0 ? 0 : h);
                                }
                                if (ok && lo >= 0xdc00 && lo < 0xe000) {
                                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                                        p += 6;
                                }
                        }
                        if (out)
                                utf8_put(out, cp);
                        continue;
                }
                default:
                        return false;
                }
                if (out)
                        buf_addc(out, ch);
        }
        return false;
}

static bool json_skip(const char **pp, const char *e)
{
        const char *p = json_ws(*pp, e);

        if (p >= e)
                return false;
        if (*p == '"') {
                if (!json_string(&p, e, NULL))
                        return false;
        } else if (*p == '{' || *p == '[') {
                int depth = 0;
                while (p < e) {
                        if (*p == '"') {
                                if (!json_string(&p, e, NULL))
                                        return false;
                                continue;
                        }
                        if (*p == '{' || *p == '[')
                                depth++;
                        else if (*p == '}' || *p == ']') {
                                depth--;
                                if (depth == 0) {
                                        p++;
                                        break;
                                }
                        }
                        p++;
                }
                if (depth != 0)
                        return false;
        } else {
                const char *q = p;
                while (q < e && (strchr("+-.eE", *q) || (*q >= '0' && *q <= '9') ||
                                 (*q >= 'a' && *q <= 'z')))
                        q++;
                if (q == p)
                        return false;
                p = q;
        }
        *pp = p;
        return true;
}

typedef struct {
        Buf type;
        Buf text;
        bool has_text;
        bool has_timestamp;
} Event;

static bool json_event(const char *p, size_t n, Event *ev)
{
        const char *e = p + n;
        static Buf key;

        buf_clear(&ev->type);
        buf_clear(&ev->text);
        ev->has_text = false;
        ev->has_timestamp = false;

        p = json_ws(p, e);
        if (p >= e || *p != '{')
                return false;
        p = json_ws(p + 1, e);
        if (p < e && *p == '}')
                return json_ws(p + 1, e) == e;
        for (;;) {
                buf_clear(&key);
                if (!json_string(&p, e, &key))
                        return false;
                p = json_ws(p, e);
                if (p >= e || *p != ':')
                        return false;
                p = json_ws(p + 1, e);
                if (strcmp(key.p, "type") == 0 && p < e && *p == '"') {
                        if (!json_string(&p, e, &ev->type))
                                return false;
                } else if (strcmp(key.p, "text") == 0 && p < e && *p == '"') {
                        if (!json_string(&p, e, &ev->text))
                                return false;
                        ev->has_text = true;
                } else {
                        if (strcmp(key.p, "timestamp") == 0)
                                ev->has_timestamp = true;
                        if (!json_skip(&p, e))
                                return false;
                }
                p = json_ws(p, e);
                if (p < e && *p == ',') {
                        p = json_ws(p + 1, e);
                        continue;
                }
                if (p < e && *p == '}')
                        return json_ws(p + 1, e) == e;
                return false;
        }
}

/* ---- SSE ---- */

static Event cur_event;

static bool is_hex32(const Buf *b)
{
        if (b->len != 32)
                return false;
        for (size_t i = 0; i < 32; i++)
                if (hexval(b->p[i]) < 0)
                        return false;
        return true;
}

static void sse_dispatch(Conn *c)
{
        Stream *st = &c->st;
        const char *raw = c->data.p ? c->data.p : "";

        if (!c->event_has_data)
                return;
        c->event_has_data = false;

        if (!json_event(c->data.p, c->data.len, &cur_event))
                fail(c, "event data is not a JSON object: %.300s", raw);
        st->n_events++;

        if (st->n_terminal > 0)
                fail(c, "event after the terminal event: %.300s", raw);

        if (strcmp(cur_event.type.p ? cur_event.type.p : "", "ping") == 0) {
                st->n_ping++;
                total_pings++;
                buf_clear(&c->data);
                return;
        }
        if (!cur_event.has_timestamp)
                fail(c, "event without timestamp: %.300s", raw);
        if (st->n_events - st->n_ping == 1) {
                if (strcmp(cur_event.type.p ? cur_event.type.p : "", "init") != 0)
                        fail(c, "first event is not init: %.300s", raw);
                if (!cur_event.has_text || !is_hex32(&cur_event.text))
                        fail(c, "init event without a 32-hex id: %.300s", raw);
                st->saw_init = true;
                st->t_init = now();
                buf_clear(&c->data);
                return;
        }
        if (!cur_event.type.p)
                fail(c, "event without a type: %.300s", raw);

        if (strcmp(cur_event.type.p, "stdout") == 0 || strcmp(cur_event.type.p, "stderr") == 0) {
                bool is_out = cur_event.type.p[3] == 'o';
                if (!cur_event.has_text)
                        fail(c, "%s event without text: %.300s", cur_event.type.p, raw);
                if (!is_out) {
                        st->n_stderr++;
                        fail(c, "unexpected stderr output: %.300s", raw);
                }
                st->n_stdout++;
                switch (opt_expect) {
                case EXPECT_EMPTY:
                        fail(c, "unexpected stdout output: %.300s", raw);
                case EXPECT_X:
                        if (st->n_stdout > 1 || cur_event.text.len != 1 || cur_event.text.p[0] != 'x')
                                fail(c, "expected exactly one stdout \"x\", got: %.300s", raw);
                        break;
                case EXPECT_ZEROS:
                        if (cur_event.text.len == 0 || cur_event.text.len > (size_t) (opt_zero_line - 1) ||
                            memcmp(cur_event.text.p, zeros, cur_event.text.len) != 0)
                                fail(c, "stdout line %" PRId64 " is not a run of at most %" PRId64
                                     " '0's (%zu bytes): %.200s", st->n_stdout, opt_zero_line - 1,
                                     cur_event.text.len, raw);
                        if (st->n_partial > 0)
                                fail(c, "stdout line %" PRId64 " follows a short line", st->n_stdout);
                        if (cur_event.text.len != (size_t) (opt_zero_line - 1))
                                st->n_partial++;
                        break;
                }
                st->text_bytes += cur_event.text.len;
                buf_clear(&c->data);
                return;
        }
        if (strcmp(cur_event.type.p, "execution_complete") == 0) {
                st->n_terminal++;
                st->terminal_ok = true;
        } else if (strcmp(cur_event.type.p, "error") == 0) {
                st->n_terminal++;
                fail(c, "command ended with an error event: %.500s", raw);
        } else if (strcmp(cur_event.type.p, "init") == 0) {
                fail(c, "second init event: %.300s", raw);
        } else {
                fail(c, "unexpected event type: %.300s", raw);
        }
        buf_clear(&c->data);
}

static void sse_line(Conn *c, const char *p, size_t n)
{
        if (n > 0 && p[n - 1] == '\r')
                n--;
        if (n == 0) {
                sse_dispatch(c);
                return;
        }
        if (n >= 5 && memcmp(p, "data:", 5) == 0) {
                p += 5;
                n -= 5;
                if (n > 0 && *p == ' ') {
                        p++;
                        n--;
                }
                if (c->event_has_data)
                        buf_addc(&c->data, '\n');
                buf_add(&c->data, p, n);
                c->event_has_data = true;
                return;
        }
        /* id:, event:, retry: and comments do not matter here */
}

static void sse_feed(Conn *c, const char *p, size_t n)
{
        while (n > 0) {
                const char *nl = memchr(p, '\n', n);
                if (!nl) {
                        buf_add(&c->sline, p, n);
                        return;
                }
                size_t k = nl - p;
                if (c->sline.len > 0) {
                        buf_add(&c->sline, p, k);
                        sse_line(c, c->sline.p, c->sline.len);
                        buf_clear(&c->sline);
                } else {
                        sse_line(c, p, k);
                }
                p += k + 1;
                n -= k + 1;
        }
}

/* ---- HTTP ---- */

static void body_feed(Conn *c, const char *p, size_t n)
{
        if (c->is_sse)
                sse_feed(c, p, n);
        else if (c->errbody.len < 4096)
                buf_add(&c->errbody, p, n);
}

static const char *header_value(const char *hdr, const char *name)
{
        size_t nl = strlen(name);
        const char *p = strstr(hdr, "\r\n");

        while (p) {
                p += 2;
                if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
                        p += nl + 1;
                        while (*p == ' ' || *p == '\t')
                                p++;
                        return p;
                }
                p = strstr(p, "\r\n");
        }
        return NULL;
}

static bool value_has(const char *v, const char *token)
{
        if (!v)
                return false;
        const char *end = strstr(v, "\r\n");
        size_t n = end ? (size_t) (end - v) : strlen(v);
        size_t tl = strlen(token);
        for (size_t i = 0; i + tl <= n; i++)
                if (strncasecmp(v + i, token, tl) == 0)
                        return true;
        return false;
}

static void parse_headers(Conn *c)
{
        const char *h = c->hdr.p;
        int minor;

        if (sscanf(h, "HTTP/1.%d %d", &minor, &c->status) != 2)
                fail(c, "bad status line: %.200s", h);
        c->chunked = value_has(header_value(h, "Transfer-Encoding"), "chunked");
        c->conn_close = value_has(header_value(h, "Connection"), "close") || minor == 0;
        const char *cl = header_value(h, "Content-Length");
        c->clen = cl ? strtoll(cl, NULL, 10) : -1;
        c->is_sse = c->status == 200 &&
                value_has(header_value(h, "Content-Type"), "text/event-stream");

        if (c->status == 200 && !c->is_sse)
                fail(c, "200 response that is not text/event-stream:\n%s", h);
        if (c->is_sse && !c->chunked)
                fail(c, "the event stream is not chunked:\n%s", h);
        if (c->chunked)
                c->ps = P_CHUNK_SIZE;
        else if (c->clen >= 0)
                c->ps = c->clen > 0 ? P_BODY_LENGTH : P_DONE;
        else
                fail(c, "HTTP %d response with neither chunked encoding nor Content-Length", c->status);
}

/* Feed response bytes; returns the number consumed (stops at the end of the response). */
static size_t http_feed(Conn *c, const char *p, size_t n)
{
        const char *start = p;

        while (n > 0 && c->ps != P_DONE) {
                switch (c->ps) {
                case P_HEADERS: {
                        /* Headers are small: byte by byte is fine. */
                        buf_addc(&c->hdr, *p);
                        p++;
                        n--;
                        if (c->hdr.len > 65536)
                                fail(c, "response headers too long");
                        if (c->hdr.len >= 4 && memcmp(c->hdr.p + c->hdr.len - 4, "\r\n\r\n", 4) == 0)
                                parse_headers(c);
                        break;
                }
                case P_CHUNK_SIZE:
                case P_TRAILERS:
                case P_CHUNK_CRLF: {
                        const char *nl = memchr(p, '\n', n);
                        size_t k = nl ? (size_t) (nl - p) + 1 : n;
                        buf_add(&c->line, p, k);
                        p += k;
                        n -= k;
                        if (c->line.len > 1024)
                                fail(c, "chunk framing line too long");
                        if (!nl)
                                break;
                        if (c->line.len < 2 || c->line.p[c->line.len - 2] != '\r')
                                fail(c, "chunk framing line not ended by CRLF: %.60s", c->line.p);
                        if (c->ps == P_CHUNK_CRLF) {
                                if (c->line.len != 2)
                                        fail(c, "chunk data not followed by CRLF");
                                c->ps = P_CHUNK_SIZE;
                        } else if (c->ps == P_CHUNK_SIZE) {
                                char *end;
                                errno = 0;
                                unsigned long long sz = strtoull(c->line.p, &end, 16);
                                if (end == c->line.p || errno)
                                        fail(c, "bad chunk size line: %.60s", c->line.p);
                                c->chunk_left = sz;
                                n_chunks++;
                                c->ps = sz == 0 ? P_TRAILERS : P_CHUNK_DATA;
                        } else { /* trailers end with an empty line */
                                if (c->line.len == 2)
                                        c->ps = P_DONE;
                        }
                        buf_clear(&c->line);
                        break;
                }
                case P_CHUNK_DATA: {
                        size_t k = n < c->chunk_left ? n : (size_t) c->chunk_left;
                        body_feed(c, p, k);
                        p += k;
                        n -= k;
                        c->chunk_left -= k;
                        if (c->chunk_left == 0)
                                c->ps = P_CHUNK_CRLF;
                        break;
                }
                case P_BODY_LENGTH: {
                        size_t k = n < (uint64_t) c->clen ? n : (size_t) c->clen;
                        body_feed(c, p, k);
                        p += k;
                        n -= k;
                        c->clen -= k;
                        if (c->clen == 0)
                                c->ps = P_DONE;
                        break;
                }
                case P_DONE:
                        break;
                }
        }
        return p - start;
}

/* ---- connections and requests ---- */

static char *json_escape(const char *s)
{
        Buf b = { 0 };
        for (; *s; s++) {
                unsigned char ch = *s;
                if (ch == '"' || ch == '\\') {
                        buf_addc(&b, '\\');
                        buf_addc(&b, ch);
                } else if (ch < 0x20) {
                        char u[8];
                        snprintf(u, sizeof u, "\\u%04x", ch);
                        buf_add(&b, u, 6);
                } else {
                        buf_addc(&b, ch);
                }
        }
        if (!b.p)
                buf_add(&b, "", 0);
        return b.p;
}

static char *request_text;
static size_t request_len;

static void build_request(void)
{
        char *cmd = json_escape(opt_command);
        size_t bl = strlen(cmd) + 16;
        char *body = malloc(bl);
        int blen = snprintf(body, bl, "{\"command\":\"%s\"}", cmd);
        size_t rl = blen + strlen(opt_token) + 512;
        request_text = malloc(rl);
        request_len = snprintf(request_text, rl,
                               "POST /command HTTP/1.1\r\n"
                               "Host: %s:%d\r\n"
                               "X-EXECD-ACCESS-TOKEN: %s\r\n"
                               "Content-Type: application/json\r\n"
                               "Accept: text/event-stream\r\n"
                               "Content-Length: %d\r\n"
                               "\r\n%s",
                               opt_host, opt_port, opt_token, blen, body);
        free(cmd);
        free(body);
}

static void conn_close(Conn *c)
{
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        c->connecting = false;
        c->reused = false;
}

static void conn_connect(Conn *c)
{
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(opt_port) };
        int one = 1;

        if (inet_pton(AF_INET, opt_host, &sa.sin_addr) != 1)
                fail(NULL, "bad host %s", opt_host);
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
                fail(NULL, "socket: %s", strerror(errno));
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        n_connects++;
        if (connect(c->fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                if (errno != EINPROGRESS)
                        fail(c, "connect: %s", strerror(errno));
                c->connecting = true;
        } else {
                c->connecting = false;
        }
}

static void conn_reset_response(Conn *c)
{
        c->ps = P_HEADERS;
        buf_clear(&c->hdr);
        buf_clear(&c->line);
        buf_clear(&c->errbody);
        buf_clear(&c->sline);
        buf_clear(&c->data);
        c->event_has_data = false;
        c->status = 0;
        c->chunked = c->conn_close = c->is_sse = false;
        c->clen = -1;
        c->chunk_left = 0;
        c->got_bytes = false;
        memset(&c->st, 0, sizeof c->st);
}

static int next_request;

static void conn_start(Conn *c, int req_index)
{
        if (c->fd < 0)
                conn_connect(c);
        c->busy = true;
        c->req_index = req_index;
        c->req = request_text;
        c->req_len = request_len;
        c->req_off = 0;
        conn_reset_response(c);
        c->t_start = now();
        if (req_index == opt_warmup)
                t_first_start = c->t_start;
}

extern char **environ;

/* The latency baseline: one fork+exec+wait of SHELL -c true, in the same conditions. */
static double spawn_once(void)
{
        char *argv[] = { (char *) opt_spawn_shell, (char *) "-c", (char *) "true", NULL };
        pid_t pid;
        int status;
        double t0 = now();
        int r = posix_spawn(&pid, opt_spawn_shell, NULL, NULL, argv, environ);

        if (r != 0)
                fail(NULL, "posix_spawn %s: %s", opt_spawn_shell, strerror(r));
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        fail(NULL, "waitpid: %s", strerror(errno));
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fail(NULL, "%s -c true: wait status 0x%x", opt_spawn_shell, status);
        return now() - t0;
}

static void request_done(Conn *c)
{
        Stream *st = &c->st;
        double t = now();

        if (c->status != 200)
                fail(c, "HTTP %d: %.500s", c->status, c->errbody.p ? c->errbody.p : "");
        if (c->sline.len > 0 || c->event_has_data)
                fail(c, "the stream ended inside an event");
        if (!st->saw_init)
                fail(c, "the stream had no init event");
        if (st->n_terminal != 1)
                fail(c, "the stream had %d terminal events", st->n_terminal);
        if (!st->terminal_ok)
                fail(c, "the stream did not end with execution_complete");
        switch (opt_expect) {
        case EXPECT_EMPTY:
                break;
        case EXPECT_X:
                if (st->n_stdout != 1)
                        fail(c, "expected one stdout \"x\", got %" PRId64 " stdout events", st->n_stdout);
                break;
        case EXPECT_ZEROS: {
                int64_t full = opt_zero_total / opt_zero_line;
                int64_t rest = opt_zero_total % opt_zero_line;
                int64_t lines = full + (rest ? 1 : 0);
                int64_t payload = st->text_bytes + full;  /* + 1 per terminated line */
                if (st->n_stdout != lines)
                        fail(c, "expected %" PRId64 " stdout lines, got %" PRId64, lines, st->n_stdout);
                if (payload != opt_zero_total)
                        fail(c, "expected %" PRId64 " payload bytes, got %" PRId64, opt_zero_total, payload);
                break;
        }
        }
        total_stdout += st->n_stdout;
        total_payload += st->text_bytes + (opt_expect == EXPECT_ZEROS ?
                                           opt_zero_total / opt_zero_line : st->n_stdout);
        if (c->req_index >= opt_warmup) {
                samples[n_samples++] = t - c->t_start;
                init_samples[n_init_samples++] = st->t_init - c->t_start;
                if (st->t_init > t_last_init)
                        t_last_init = st->t_init;
                if (t_first_done == 0 || t < t_first_done)
                        t_first_done = t;
                if (t > t_last_done)
                        t_last_done = t;
        }
        if (opt_spawn_shell) {
                double b = spawn_once();
                if (c->req_index >= opt_warmup)
                        base_samples[n_base_samples++] = b;
        }
        c->busy = false;
        c->reused = true;
        if (c->conn_close) {
                conn_close(c);
                n_reconnects++;
        }
}

static void conn_io(Conn *c, short revents)
{
        static char rbuf[256 * 1024];

        if (c->connecting) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err)
                        fail(c, "connect: %s", strerror(err));
                c->connecting = false;
        }
        if (c->req_off < c->req_len) {
                if (!(revents & (POLLOUT | POLLERR | POLLHUP)))
                        return;
                ssize_t w = write(c->fd, c->req + c->req_off, c->req_len - c->req_off);
                if (w < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return;
                        if ((errno == EPIPE || errno == ECONNRESET) && c->reused && !c->got_bytes) {
                                /* The server closed the idle keep-alive connection: retry. */
                                conn_close(c);
                                n_reconnects++;
                                conn_start(c, c->req_index);
                                return;
                        }
                        fail(c, "write: %s", strerror(errno));
                }
                c->req_off += w;
                if (c->req_off < c->req_len)
                        return;
        }
        for (;;) {
                ssize_t r = read(c->fd, rbuf, sizeof rbuf);
                if (r < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return;
                        if (errno == ECONNRESET && c->reused && !c->got_bytes) {
                                conn_close(c);
                                n_reconnects++;
                                conn_start(c, c->req_index);
                                return;
                        }
                        fail(c, "read: %s (%s)", strerror(errno),
                             c->got_bytes ? "in the middle of the response" :
                             "before any response byte");
                }
                if (r == 0) {
                        if (c->reused && !c->got_bytes) {
                                conn_close(c);
                                n_reconnects++;
                                conn_start(c, c->req_index);
                                return;
                        }
                        fail(c, "connection closed before the end of the response "
                             "(parse state %d, %d events)", c->ps, c->st.n_events);
                }
                c->got_bytes = true;
                n_reads++;
                n_read_bytes += r;
                size_t used = http_feed(c, rbuf, r);
                if (c->ps == P_DONE) {
                        if (used != (size_t) r)
                                fail(c, "%zd unexpected bytes after the response", r - (ssize_t) used);
                        request_done(c);
                        return;
                }
                if ((size_t) r < sizeof rbuf)
                        return;
        }
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

static double pct_of(const double *v, int n, double p)
{
        if (n == 0)
                return 0;
        double idx = p * (n - 1);
        int lo = (int) idx;
        int hi = lo + 1 < n ? lo + 1 : lo;
        return v[lo] + (v[hi] - v[lo]) * (idx - lo);
}

static double pct(double p)
{
        return pct_of(samples, n_samples, p);
}

static void usage(void)
{
        fprintf(stderr,
                "usage: execd-bench-client --port=P --token=T --command=CMD [--host=127.0.0.1]\n"
                "         [--requests=N] [--warmup=W] [--concurrency=C] [--timeout=SECONDS]\n"
                "         [--expect=empty|x|zeros:TOTAL_BYTES:LINE_BYTES]\n"
                "         [--spawn-baseline=SHELL]  (with --concurrency=1: time SHELL -c true\n"
                "                                    after each request, report base_* figures)\n");
        exit(2);
}

int main(int argc, char **argv)
{
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                const char *v = strchr(a, '=');
                if (!v)
                        usage();
                v++;
                if (strncmp(a, "--host=", 7) == 0)
                        opt_host = v;
                else if (strncmp(a, "--port=", 7) == 0)
                        opt_port = atoi(v);
                else if (strncmp(a, "--token=", 8) == 0)
                        opt_token = v;
                else if (strncmp(a, "--command=", 10) == 0)
                        opt_command = v;
                else if (strncmp(a, "--requests=", 11) == 0)
                        opt_requests = atoi(v);
                else if (strncmp(a, "--warmup=", 9) == 0)
                        opt_warmup = atoi(v);
                else if (strncmp(a, "--concurrency=", 14) == 0)
                        opt_concurrency = atoi(v);
                else if (strncmp(a, "--spawn-baseline=", 17) == 0)
                        opt_spawn_shell = v;
                else if (strncmp(a, "--timeout=", 10) == 0)
                        opt_timeout = atof(v);
                else if (strcmp(a, "--expect=empty") == 0)
                        opt_expect = EXPECT_EMPTY;
                else if (strcmp(a, "--expect=x") == 0)
                        opt_expect = EXPECT_X;
                else if (strncmp(a, "--expect=zeros:", 15) == 0) {
                        opt_expect = EXPECT_ZEROS;
                        if (sscanf(a + 15, "%" SCNd64 ":%" SCNd64, &opt_zero_total, &opt_zero_line) != 2 ||
                            opt_zero_total <= 0 || opt_zero_line < 2)
                                usage();
                } else
                        usage();
        }
        if (!opt_port || !opt_command || opt_requests < 1 || opt_warmup < 0 || opt_concurrency < 1)
                usage();
        if (opt_spawn_shell && opt_concurrency != 1)
                usage();
        if (opt_expect == EXPECT_ZEROS) {
                zeros = malloc(opt_zero_line);
                memset(zeros, '0', opt_zero_line);
        }

        int total = opt_requests + opt_warmup;
        samples = calloc(opt_requests, sizeof *samples);
        base_samples = calloc(opt_requests, sizeof *base_samples);
        init_samples = calloc(opt_requests, sizeof *init_samples);
        build_request();

        int nconn = opt_concurrency < total ? opt_concurrency : total;
        Conn *conns = calloc(nconn, sizeof *conns);
        struct pollfd *pfd = calloc(nconn, sizeof *pfd);
        int *pidx = calloc(nconn, sizeof *pidx);
        for (int i = 0; i < nconn; i++) {
                conns[i].idx = i;
                conns[i].fd = -1;
        }

        double t0 = now();
        double deadline = t0 + opt_timeout;
        int done = 0;

        for (;;) {
                /* Warm-ups run first, and all finish before the measured requests start. */
                int busy = 0;
                for (int i = 0; i < nconn; i++)
                        busy += conns[i].busy;
                for (int i = 0; i < nconn && next_request < total; i++) {
                        if (conns[i].busy)
                                continue;
                        if (next_request == opt_warmup && busy > 0 && opt_warmup > 0)
                                break;
                        conn_start(&conns[i], next_request++);
                        busy++;
                }
                if (busy == 0 && next_request >= total)
                        break;

                int np = 0;
                for (int i = 0; i < nconn; i++) {
                        Conn *c = &conns[i];
                        if (!c->busy)
                                continue;
                        pfd[np].fd = c->fd;
                        pfd[np].events = (c->connecting || c->req_off < c->req_len) ? POLLOUT : POLLIN;
                        pfd[np].revents = 0;
                        pidx[np++] = i;
                }
                double left = deadline - now();
                if (left <= 0) {
                        int n_conn = 0, n_send = 0, n_silent = 0, n_hdr = 0, n_noinit = 0, n_stream = 0;
                        int shown = 0;
                        for (int i = 0; i < nconn; i++) {
                                Conn *c = &conns[i];
                                if (!c->busy)
                                        continue;
                                if (c->connecting)
                                        n_conn++;
                                else if (c->req_off < c->req_len)
                                        n_send++;
                                else if (!c->got_bytes)
                                        n_silent++;
                                else if (c->ps == P_HEADERS)
                                        n_hdr++;
                                else if (!c->st.saw_init)
                                        n_noinit++;
                                else
                                        n_stream++;
                                if (shown++ < 5)
                                        fprintf(stderr, "  connection %d request %d: parse state %d, "
                                                "%d events, %" PRId64 " stdout, init %s\n", i,
                                                c->req_index, c->ps, c->st.n_events,
                                                c->st.n_stdout, c->st.saw_init ? "yes" : "no");
                        }
                        fail(NULL, "timed out after %.0f s with %d of %d requests done; unfinished: "
                             "%d still connecting, %d sending the request, %d sent the request but "
                             "got no response byte, %d inside the response headers, %d streaming "
                             "before init, %d streaming after init",
                             opt_timeout, done, total, n_conn, n_send, n_silent, n_hdr, n_noinit,
                             n_stream);
                }
                int r = poll(pfd, np, (int) (left * 1000) + 1);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        fail(NULL, "poll: %s", strerror(errno));
                }
                for (int k = 0; k < np; k++) {
                        if (!pfd[k].revents)
                                continue;
                        Conn *c = &conns[pidx[k]];
                        conn_io(c, pfd[k].revents);
                        if (!c->busy)
                                done++;
                }
        }
        double t_end = now();

        qsort(samples, n_samples, sizeof *samples, cmp_double);
        qsort(base_samples, n_base_samples, sizeof *base_samples, cmp_double);
        qsort(init_samples, n_init_samples, sizeof *init_samples, cmp_double);
        printf("requests %d\n", n_samples);
        printf("warmup %d\n", opt_warmup);
        printf("concurrency %d\n", nconn);
        printf("connects %d\n", n_connects);
        printf("reconnects %d\n", n_reconnects);
        printf("wall_s %.6f\n", t_end - (t_first_start ? t_first_start : t0));
        printf("median_s %.9f\n", pct(0.5));
        printf("p10_s %.9f\n", pct(0.1));
        printf("p90_s %.9f\n", pct(0.9));
        printf("min_s %.9f\n", n_samples ? samples[0] : 0);
        printf("max_s %.9f\n", n_samples ? samples[n_samples - 1] : 0);
        printf("init_median_s %.9f\n", pct_of(init_samples, n_init_samples, 0.5));
        printf("last_init_s %.6f\n", t_last_init ? t_last_init - t_first_start : 0);
        printf("first_done_s %.6f\n", t_first_done ? t_first_done - t_first_start : 0);
        printf("last_done_s %.6f\n", t_last_done ? t_last_done - t_first_start : 0);
        if (n_base_samples) {
                printf("base_requests %d\n", n_base_samples);
                printf("base_median_s %.9f\n", pct_of(base_samples, n_base_samples, 0.5));
                printf("base_p10_s %.9f\n", pct_of(base_samples, n_base_samples, 0.1));
                printf("base_p90_s %.9f\n", pct_of(base_samples, n_base_samples, 0.9));
                printf("base_min_s %.9f\n", base_samples[0]);
                printf("base_max_s %.9f\n", base_samples[n_base_samples - 1]);
        }
        printf("stdout_events %" PRId64 "\n", total_stdout);
        printf("payload_bytes %" PRId64 "\n", total_payload);
        printf("pings %" PRId64 "\n", total_pings);
        printf("reads %" PRId64 "\n", n_reads);
        printf("read_bytes %" PRId64 "\n", n_read_bytes);
        printf("chunks %" PRId64 "\n", n_chunks);
        for (int i = 0; i < nconn; i++)
                conn_close(&conns[i]);
        return 0;
}
