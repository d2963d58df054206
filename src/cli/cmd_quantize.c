/* maas quantize (being written). */
#include "cli/cli.h"

#include <stdio.h>

int cmd_quantize(int argc, char **argv)
{
    fprintf(stderr, "maas quantize: not built yet\n");
    return 1;
}
