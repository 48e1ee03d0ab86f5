/* placeholder: being written */
#include "paykit.h"
void paykit_crypto_register(lua_State *L) { (void)L; }
