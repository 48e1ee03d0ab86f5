/* The parts of paykit.core: each registers its functions into the module table on top of the stack. */
#ifndef PAYKIT_H
#define PAYKIT_H

#include "compat.h"

#define PAYKIT_VERSION "0.1.0"

void paykit_crypto_register(lua_State *L);
void paykit_codec_register(lua_State *L);
void paykit_http_register(lua_State *L);
void paykit_httpparse_register(lua_State *L);

#endif
