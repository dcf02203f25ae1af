/* remote.h - engines that are clients of the audio-translator services.
 *
 * The standalone `pipeline` service drives the same at_asr/at_mt/at_tts
 * interfaces as `serve`, but each engine forwards to a service over the
 * network:
 *   at_asr_remote_new: asr_streaming's WebSocket /v1/stream (streams only)
 *   at_mt_remote_new:  translate's POST /translate, GET /languages
 *   at_tts_remote_new: tts's POST /v1/audio/speech (streamed), GET /v1/voices
 * base_url is "http://host:port" (no TLS: services talk on a private
 * network).  The constructors contact the service (voices, language pairs)
 * and fail with AT_E_IO when it cannot be reached. */
#ifndef AT_ENGINES_REMOTE_H
#define AT_ENGINES_REMOTE_H

#include "core/error.h"
#include "engines/asr/asr.h"
#include "engines/mt/mt.h"
#include "engines/tts/tts.h"

/* api_key: sent as "Authorization: Bearer KEY" to services that need
 * one (--api-keys); NULL or "" for none. */
at_asr_engine *at_asr_remote_new(const char *base_url, const char *api_key, at_err *err);
at_mt_engine *at_mt_remote_new(const char *base_url, const char *api_key, at_err *err);
at_tts_engine *at_tts_remote_new(const char *base_url, const char *api_key, at_err *err);

/* "http://host:port/path" -> host, port (default 80), path ("" if none).
 * AT_E_INVALID for anything else (https is not supported). */
int at_url_parse(const char *url, char *host, size_t host_cap, int *port, char *path, size_t path_cap,
                 at_err *err);

#endif
