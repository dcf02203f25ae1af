/* The translate service binary: see services/runner.h. */
#include "services/runner.h"

int main(int argc, char **argv)
{
    return at_services_main("translate", AT_APP_MT, argc, argv, 1);
}
