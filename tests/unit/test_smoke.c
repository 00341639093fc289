/*
** tests/unit/test_smoke.c -- the unit-test harness itself works: links
** libsqlite3 and sees the version the project is built for.
*/
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    if (strncmp(sqlite3_libversion(), "3.40.", 5) != 0) {
        fprintf(stderr, "expected SQLite 3.40.x, got %s\n",
                sqlite3_libversion());
        return 1;
    }
    printf("sqlite %s\n", sqlite3_libversion());
    return 0;
}
