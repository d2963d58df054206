/* maas mkmodel (being written). */
#include "cli/cli.h"

#include <stdio.h>

int cmd_mkmodel(int argc, char **argv)
{
    fprintf(stderr, "maas mkmodel: not built yet\n");
    return 1;
}
