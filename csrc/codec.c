/* placeholder: being written */
#include "paykit.h"
void paykit_codec_register(lua_State *L) { (void)L; }
