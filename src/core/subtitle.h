/* subtitle.h - SRT and WebVTT from timed segments. */
#ifndef AT_CORE_SUBTITLE_H
#define AT_CORE_SUBTITLE_H

#include <stddef.h>

typedef struct at_cue {
    double start, end; /* seconds */
    const char *text;
} at_cue;

/* Malloc'd documents; NULL on allocation failure.  Cues with empty text are
 * skipped; numbering stays consecutive.  Times "HH:MM:SS,mmm" (SRT) and
 * "HH:MM:SS.mmm" (VTT), end clamped to >= start. */
/* Notes (added): each cue ends with a blank line ("...text\n\n"); an empty
 * SRT is "" and an empty VTT is "WEBVTT\n\n".  Text lines are trimmed and
 * blank lines inside a cue dropped (a blank line would end the cue); VTT
 * text escapes & < > as entities.  Negative/NaN times become 0. */
char *at_subtitle_srt(const at_cue *cues, size_t n);
char *at_subtitle_vtt(const at_cue *cues, size_t n);

#endif
