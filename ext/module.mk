LIB_SRCS += ext/ext.c ext/config.c ext/conn.c ext/mirror.c ext/sql.c \
            ext/client.c ext/tables.c
