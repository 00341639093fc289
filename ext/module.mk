LIB_SRCS += ext/ext.c ext/mirror.c ext/sql.c
