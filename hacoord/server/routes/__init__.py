"""The API's routes, one module per area, each adding its routes to the app (``install``) over
the member's :class:`~hacoord.server.context.ApiContext`. (They go on the app itself, not on
included routers, so that ``app.routes`` lists every route: the 405 answer's ``Allow`` header
and the tests that walk the route table read it.)

Route modules do not postpone annotations: FastAPI reads a leader-only handler's signature
through :meth:`~hacoord.server.context.ApiContext.leading`'s wrapper, whose module namespace is
not the handler's.
"""
