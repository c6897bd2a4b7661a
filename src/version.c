/* src/version.c — gm_version(). */
#include <gmtrack/common.h>

#define GM_STR2(x) #x
#define GM_STR(x) GM_STR2(x)

const char *gm_version(void)
{
	return GM_STR(GM_VERSION_MAJOR) "." GM_STR(GM_VERSION_MINOR) "."
		GM_STR(GM_VERSION_PATCH);
}

int gm_version_number(void)
{
	return GM_VERSION_MAJOR * 10000 + GM_VERSION_MINOR * 100 +
	       GM_VERSION_PATCH;
}
