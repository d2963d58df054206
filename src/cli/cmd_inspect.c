/* maas inspect (being written). */
#include "cli/cli.h"

#include <stdio.h>

int cmd_inspect(int argc, char **argv)
{
    fprintf(stderr, "maas inspect: not built yet\n");
    return 1;
}
