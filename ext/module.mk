LIB_SRCS += ext/ext.c
