/* wyoming.h - the Wyoming protocol's events on a stream socket.
 *
 * Home Assistant's local voice pipeline talks to speech services in
 * Wyoming: each event is one line of JSON ({"type", "data",
 * "data_length", "payload_length", "version"}), then data_length bytes of
 * JSON merged over "data", then payload_length bytes of payload (PCM
 * audio).  This module reads and writes events with bounds on every
 * length and a deadline on every read; the services (services/wyoming.c)
 * give them meaning. */
#ifndef AT_CORE_WYOMING_H
#define AT_CORE_WYOMING_H

#include <stddef.h>

#include "core/error.h"

typedef struct cJSON cJSON;

#define AT_WY_LINE_MAX (64 * 1024)  /* header line */
#define AT_WY_DATA_MAX (256 * 1024) /* additional data */

typedef struct at_wy_event {
    char type[64];
    cJSON *data; /* an object, never NULL after a successful read */
    unsigned char *payload;
    size_t payload_len;
} at_wy_event;

typedef struct at_wy_reader at_wy_reader;

/* Reads from fd (not owned); payloads over max_payload are refused. */
at_wy_reader *at_wy_reader_new(int fd, size_t max_payload);
void at_wy_reader_free(at_wy_reader *r);

/* Next event within timeout_ms (the whole event, not each byte).
 * Returns 1 with an event (free it with at_wy_event_free), 0 when the
 * peer closed cleanly between events, AT_E_CANCELLED on timeout, and
 * AT_E_INVALID (a malformed or oversized event: the stream cannot be
 * followed after it) or AT_E_IO with a message. */
int at_wy_read(at_wy_reader *r, at_wy_event *ev, int timeout_ms, at_err *err);
void at_wy_event_free(at_wy_event *ev);

/* Writes one event as Wyoming 1.x peers write it (data as additional
 * data).  data and payload may be NULL.  AT_E_IO when the peer is gone or
 * does not read within timeout_ms. */
int at_wy_write(int fd, const char *type, const cJSON *data, const void *payload, size_t len, int timeout_ms,
                at_err *err);

#endif
