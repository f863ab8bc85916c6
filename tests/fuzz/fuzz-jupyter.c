/* SPDX-License-Identifier: Apache-2.0 */
/* The Jupyter message decoder: kernel_handle_message (daemon/jupyter.c) takes a message's ZMQ
 * frames, finds the delimiter, checks the HMAC-SHA256 signature and only then parses the header,
 * parent header and content and acts on them. jupyter.c is included whole, so its static
 * decoder and Kernel struct are reached without changing the daemon.
 *
 * Input: byte 0 is flags; the rest is frames separated by 0x1e (a byte JSON text cannot hold
 * raw). flags & 1: the harness signs the message with the kernel's key (computed here with
 * GHmac, independently of the daemon's sign()), building
 *     [identity, "<IDS|MSG>", signature, frame0 (header), frame1 (parent), frame2 (metadata),
 *      frame3 (content), the other frames as buffers],
 * so the decoder gets past the signature; otherwise the frames are passed as they are (garbage,
 * forged or missing signatures). flags >> 1 pick the socket and the kernel's state. */
#include "../../daemon/jupyter.c"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_KEY "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define FUZZ_RUN_ID "run-1"

static sd_event *fuzz_event;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        setenv("G_SLICE", "always-malloc", 1);
        log_set_max_level(LOG_ERR); /* bad signatures are logged as warnings: not every time */
        if (sd_event_new(&fuzz_event) < 0)
                abort();
        return 0;
}

static unsigned n_events;

static void on_stream(void *ud, const char *name, const char *text) {
        if (!name || !text)
                abort();
        n_events++;
}

static void on_result(void *ud, int64_t count, JsonObject *data) {
        if (!data)
                abort();
        n_events++;
}

static void on_error(void *ud, const char *ename, const char *evalue, char **traceback) {
        if (!ename || !evalue || !traceback)
                abort();
        for (char **t = traceback; *t; t++)
                (void) strlen(*t);
        n_events++;
}

static void on_execute_input(void *ud, int64_t count) {
        n_events++;
}

static void on_complete(void *ud, const char *status, uint64_t elapsed_ms) {
        if (!status)
                abort();
        n_events++;
}

static void on_ready(Kernel *k, int error, const char *message, void *userdata) {
        n_events++;
}

static const KernelRunCallbacks run_callbacks = { on_stream, on_result, on_error, on_execute_input, on_complete };
static const KernelCallbacks kernel_callbacks = { on_ready, NULL };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const int socks[4] = { SOCK_SHELL, SOCK_IOPUB, SOCK_CONTROL, SOCK_IOPUB };
        zmq_msg_t frames[FRAMES_MAX];
        const uint8_t *pieces[FRAMES_MAX];
        size_t piece_len[FRAMES_MAX], n_pieces = 0, n = 0;
        Kernel k = {};
        uint8_t flags;
        int sock;

        if (size < 1 || size > 256 * 1024)
                return 0;
        flags = data[0];
        data++, size--;
        for (size_t at = 0; n_pieces < FRAMES_MAX;) {
                const uint8_t *sep = memchr(data + at, 0x1e, size - at);
                size_t end = sep ? (size_t) (sep - data) : size;
                pieces[n_pieces] = data + at;
                piece_len[n_pieces++] = end - at;
                if (!sep)
                        break;
                at = end + 1;
        }

        k.n_ref = 1;
        k.event = fuzz_event;
        k.cb = kernel_callbacks;
        k.pid = 4242;
        k.pidfd = -1;
        k.log_fd = -1;
        memcpy(k.key, FUZZ_KEY, sizeof k.key);
        sock = socks[(flags >> 1) & 3];
        k.state = (flags & 8) ? KERNEL_READY : KERNEL_STARTING;
        k.got_info_reply = (flags & 16) != 0;
        if (flags & 32) {
                k.running = true;
                strcpy(k.run_msg_id, FUZZ_RUN_ID);
                k.run_cb = run_callbacks;
                k.got_idle = (flags & 64) != 0;
        }

        if (flags & 1) {
                /* [identity, delimiter, signature, header, parent, metadata, content, buffers...] */
                const void *parts[4];
                size_t sizes[4];
                GHmac *h = g_hmac_new(G_CHECKSUM_SHA256, (const guchar *) FUZZ_KEY, strlen(FUZZ_KEY));
                const char *digest;

                for (int i = 0; i < 4; i++) {
                        parts[i] = i < (int) n_pieces ? (const void *) pieces[i] : (const void *) "";
                        sizes[i] = i < (int) n_pieces ? piece_len[i] : 0;
                        g_hmac_update(h, parts[i], (gssize) sizes[i]);
                }
                digest = g_hmac_get_string(h);
                zmq_msg_init_size(&frames[n], 6);
                memcpy(zmq_msg_data(&frames[n++]), "ident1", 6);
                zmq_msg_init_size(&frames[n], strlen(DELIMITER));
                memcpy(zmq_msg_data(&frames[n++]), DELIMITER, strlen(DELIMITER));
                zmq_msg_init_size(&frames[n], 64);
                memcpy(zmq_msg_data(&frames[n++]), digest, 64);
                g_hmac_unref(h);
                for (int i = 0; i < 4; i++) {
                        zmq_msg_init_size(&frames[n], sizes[i]);
                        if (sizes[i])
                                memcpy(zmq_msg_data(&frames[n]), parts[i], sizes[i]);
                        n++;
                }
                for (size_t i = 4; i < n_pieces && n < FRAMES_MAX; i++) {
                        zmq_msg_init_size(&frames[n], piece_len[i]);
                        if (piece_len[i])
                                memcpy(zmq_msg_data(&frames[n]), pieces[i], piece_len[i]);
                        n++;
                }
        } else {
                for (size_t i = 0; i < n_pieces; i++) {
                        zmq_msg_init_size(&frames[n], piece_len[i]);
                        if (piece_len[i])
                                memcpy(zmq_msg_data(&frames[n]), pieces[i], piece_len[i]);
                        n++;
                }
        }

        kernel_handle_message(&k, sock, frames, n);

        for (size_t i = 0; i < n; i++)
                zmq_msg_close(&frames[i]);
        /* What a run or a start left behind (freed by kernel_free in the daemon). */
        k.idle_timer = sd_event_source_disable_unref(k.idle_timer);
        free(k.reply_status);
        if (k.n_ref != 1)
                abort();
        return 0;
}
