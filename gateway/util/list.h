/*
 * The one intrusive list of the gateway: circular, doubly linked, with a
 * sentinel head, as in pgbouncer's usual/list.h and the Linux kernel. An
 * object that sits on a list embeds a struct pgw_list node and is found
 * back from it with pgw_list_entry(). Every operation is O(1) and
 * branch-free; removing needs no head, so an object can leave whichever
 * list it is on. A node or head must be initialised (pgw_list_init() or
 * PGW_LIST_HEAD_INIT) before use; a removed node is initialised again, so
 * pgw_list_linked() tells whether it is on a list. Header only; not
 * thread-safe (each list belongs to one thread).
 */
#ifndef PUSHGW_UTIL_LIST_H
#define PUSHGW_UTIL_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct pgw_list {
    struct pgw_list *next;
    struct pgw_list *prev;
};

/* A static initialiser for the head or node |name|: an empty list. */
#define PGW_LIST_HEAD_INIT(name)                                               \
    {                                                                          \
        &(name), &(name)                                                       \
    }

/* The object of type |type| whose member |member| is the node |ptr|. */
#define pgw_list_entry(ptr, type, member)                                      \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* Visits every node of |head| in order; the loop body must not remove
 * |pos| (use pgw_list_for_each_safe() for that). */
#define pgw_list_for_each(pos, head)                                           \
    for ((pos) = (head)->next; (pos) != (head); (pos) = (pos)->next)

/* As pgw_list_for_each(); the body may remove (and free) |pos|. */
#define pgw_list_for_each_safe(pos, tmp, head)                                 \
    for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head);           \
         (pos) = (tmp), (tmp) = (pos)->next)

static inline void pgw_list_init(struct pgw_list *self)
{
    self->next = self;
    self->prev = self;
}

static inline bool pgw_list_empty(const struct pgw_list *head)
{
    return head->next == head;
}

/* True when the node |node| is on a list. */
static inline bool pgw_list_linked(const struct pgw_list *node)
{
    return node->next != node;
}

static inline void pgw_list_link_between(struct pgw_list *node,
                                         struct pgw_list *prev,
                                         struct pgw_list *next)
{
    node->prev = prev;
    node->next = next;
    prev->next = node;
    next->prev = node;
}

/* Inserts the unlinked |node| first in |head|. */
static inline void pgw_list_push_front(struct pgw_list *head,
                                       struct pgw_list *node)
{
    pgw_list_link_between(node, head, head->next);
}

/* Inserts the unlinked |node| last in |head|. */
static inline void pgw_list_push_back(struct pgw_list *head,
                                      struct pgw_list *node)
{
    pgw_list_link_between(node, head->prev, head);
}

/* Takes |node| off its list (a no-op on an unlinked node). */
static inline void pgw_list_remove(struct pgw_list *node)
{
    node->prev->next = node->next;
    node->next->prev = node->prev;
    pgw_list_init(node);
}

/* The first node of |head|, or NULL when it is empty. */
static inline struct pgw_list *pgw_list_first(const struct pgw_list *head)
{
    return head->next == head ? NULL : head->next;
}

/* The last node of |head|, or NULL when it is empty. */
static inline struct pgw_list *pgw_list_last(const struct pgw_list *head)
{
    return head->prev == head ? NULL : head->prev;
}

/* Removes and returns the first node of |head|, or NULL when empty. */
static inline struct pgw_list *pgw_list_pop_front(struct pgw_list *head)
{
    struct pgw_list *node = pgw_list_first(head);

    if (node)
        pgw_list_remove(node);
    return node;
}

/* Moves every node of |from| to the end of |to|; |from| is left empty. */
static inline void pgw_list_append_all(struct pgw_list *to,
                                       struct pgw_list *from)
{
    if (pgw_list_empty(from))
        return;
    from->next->prev = to->prev;
    to->prev->next = from->next;
    from->prev->next = to;
    to->prev = from->prev;
    pgw_list_init(from);
}

#endif
