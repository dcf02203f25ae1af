#include "engines/asr/whisper/whisper.h"
