/* placeholder: being written */
#include "paykit.h"
void paykit_http_register(lua_State *L) { (void)L; }
