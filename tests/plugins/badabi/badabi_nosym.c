/* A well-formed shared module that exports a function, but not the sink entry point. */
#include <outbox_relay/sink.h>

RELAY_SINK_EXPORT int badabi_nosym_answer(void);

int badabi_nosym_answer(void)
{
    return 42;
}
