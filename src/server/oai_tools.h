/*
 * server/oai_tools.h — the chat request's tools and template variables in,
 * tool calls and reasoning out (the parts of OpenAI's schema that issue 13
 * added), kept apart from openai.c's core fields.
 *
 * In: tools (type "function", a name of [A-Za-z0-9_-]{1,64}, parameters an
 * object), tool_choice ("none", "auto", "required" or {"type":"function",
 * "function":{"name":N}} naming one of the tools), parallel_tool_calls,
 * chat_template_kwargs (an object whose keys become template variables),
 * and the messages again as full objects: assistant tool_calls whose
 * function.arguments arrive as a JSON string are handed to the template as
 * the object, tool messages keep tool_call_id and name. The result is
 * oai_request.chat_vars, the JSON the model's template is rendered with.
 *
 * A forced call ("required", a named function) is decoded under a grammar
 * of the model's call syntax (toolgrammar.c, built in structured.c).
 */
#ifndef MAAS_SERVER_OAI_TOOLS_H
#define MAAS_SERVER_OAI_TOOLS_H

#include "server/openai.h"

#include <jansson.h>

/* "an object", "a string", ... for error messages (openai.c). */
const char *oai_json_type_name(const json_t *v);

/* Parses and checks tools, tool_choice, parallel_tool_calls,
 * chat_template_kwargs and the messages' tool fields of a chat request
 * root (after its messages were parsed) and builds r->chat_vars. 0, or -1
 * with e (400 naming the field). */
int oai_parse_tools(json_t *root, struct oai_request *r, struct oai_error *e);

/* Whether tool_choice demands a call (required, a named function). */
bool oai_tools_forced(const struct oai_request *r);

/* Sets the parts of a chat message (or a streamed delta) obj that tool
 * calls and reasoning change: content null when p->content_null,
 * reasoning_content, tool_calls. -1 on out of memory. */
int oai_parts_apply(json_t *obj, const struct oai_parts *p, bool delta);

#endif
