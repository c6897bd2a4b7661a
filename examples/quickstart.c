/* The README's example: count what a structure allocates. */
#include <gmtrack/gmtrack.h>
#include <stdio.h>

int main(void)
{
	struct gm_alloc_counting counting;
	gm_alloc_counting_init(&counting, NULL);
	void *p = gm_alloc_mem(&counting.allocator, 100, 64);
	printf("gmtrack %s: %zu bytes in use\n", gm_version(),
	       gm_alloc_counting_bytes(&counting));
	gm_alloc_release(&counting.allocator, p, 100);
	return p && gm_alloc_counting_bytes(&counting) == 0 ? 0 : 1;
}
